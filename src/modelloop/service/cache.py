"""The local copy of a remote registry's versions: `$MODELLOOP_HOME/cache/<model>/<version>/`.

A version is downloaded once (its sha256 checked by the registry), written to a temporary
folder and renamed into place; it is checked again against its metadata on every load. The
cache remembers which version of each model was active last, so a pod restarted while the
object store is down serves what it served before.
"""

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from modelloop.store.metadata import ModelMetadata
from modelloop.store.names import check_model_name
from modelloop.store.registry import METADATA_FILE, MODEL_FILE, Registry, sha256_bytes

ACTIVE_FILE = "active"
KEEP_VERSIONS = 3


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, model: str, version: int) -> Path:
        return self.root / check_model_name(model) / str(int(version))

    def cached(self, model: str, version: int) -> tuple[ModelMetadata, bytes] | None:
        """The version's metadata and graph if the cache holds them intact, else None."""
        d = self._dir(model, version)
        try:
            meta = ModelMetadata.model_validate_json((d / METADATA_FILE).read_bytes())
            data = (d / MODEL_FILE).read_bytes()
        except (OSError, ValueError):
            return None
        if sha256_bytes(data) != meta.onnx_sha256:
            shutil.rmtree(d, ignore_errors=True)  # a damaged copy: fetch it again
            return None
        return meta, data

    def fetch(self, registry: Registry, model: str, version: int) -> tuple[ModelMetadata, bytes]:
        """From the cache, or downloaded from `registry` (hash-checked) and kept."""
        found = self.cached(model, version)
        if found is not None:
            return found
        meta = registry.metadata(model, version)
        data = registry.onnx_bytes(model, version)
        final = self._dir(model, version)
        tmp = final.with_name(f".tmp-{uuid.uuid4().hex}")
        tmp.mkdir(parents=True)
        try:
            _write(tmp / MODEL_FILE, data)
            _write(tmp / METADATA_FILE, meta.model_dump_json().encode())
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return meta, data

    def remember_active(self, model: str, version: int) -> None:
        d = self.root / check_model_name(model)
        d.mkdir(parents=True, exist_ok=True)
        _write(d / ACTIVE_FILE, f"{int(version)}\n".encode())
        self._prune(d, version)

    def last_active(self) -> dict[str, int]:
        """model -> the version it served last, for the models whose copy is intact."""
        found: dict[str, int] = {}
        if not self.root.is_dir():
            return found
        for d in sorted(self.root.iterdir()):
            with contextlib.suppress(OSError, ValueError):
                version = int((d / ACTIVE_FILE).read_text().strip())
                if self.cached(d.name, version) is not None:
                    found[d.name] = version
        return found

    def _prune(self, d: Path, active: int) -> None:
        versions = sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())
        for v in versions[:-KEEP_VERSIONS]:
            if v != active:
                shutil.rmtree(d / str(v), ignore_errors=True)
