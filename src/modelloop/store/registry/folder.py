"""The folder backend: numbered versions in folders, an `active` pointer and a history.

    <root>/<model>/<version>/model.onnx, metadata.json, reference.json
    <root>/<model>/active          the serving version, replaced atomically
    <root>/<model>/history.jsonl   every promote and rollback

A version is written into a temporary folder and renamed into place under a per-model lock, so
readers see all of it or none of it, and two publishers never get the same number.
"""

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from modelloop.store.errors import ModelNotFound, RegistryNotWritable, VersionNotFound
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.names import check_model_name
from modelloop.store.registry import (
    METADATA_FILE,
    MODEL_FILE,
    Action,
    HistoryEntry,
    Registry,
    sha256_bytes,
)

ACTIVE_FILE = "active"
HISTORY_FILE = "history.jsonl"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _not_writable(root: Path, e: OSError) -> str:
    return f"registry {root} is not writable: {e.strerror or e}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderRegistry(Registry):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.location = str(self.root)

    # -- reading ---------------------------------------------------------------------------

    def model_dir(self, model: str) -> Path:
        return self.root / check_model_name(model)

    def version_dir(self, model: str, version: int) -> Path:
        return self.model_dir(model) / str(int(version))

    def _names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]

    def versions(self, model: str) -> list[int]:
        d = self.model_dir(model)
        if not d.is_dir():
            return []
        found = []
        for p in d.iterdir():
            if p.name.isdigit() and (p / METADATA_FILE).is_file():
                found.append(int(p.name))
        return sorted(found)

    def _read(self, model: str, version: int, filename: str) -> bytes:
        try:
            return (self.version_dir(model, version) / filename).read_bytes()
        except FileNotFoundError:
            if not self.exists(model):
                raise ModelNotFound(model) from None
            if version not in self.versions(model):
                raise VersionNotFound(model, version) from None
            raise

    def active(self, model: str) -> int | None:
        try:
            text = (self.model_dir(model) / ACTIVE_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def history(self, model: str) -> list[HistoryEntry]:
        path = self.model_dir(model) / HISTORY_FILE
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [HistoryEntry.model_validate_json(line) for line in lines if line.strip()]

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[Path]:
        d = self.model_dir(model)
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # no permission, read-only, or a path through a regular file
            raise RegistryNotWritable(_not_writable(self.root, e)) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield d
        finally:
            os.close(fd)

    def publish(
        self, model: str, onnx: bytes, metadata: ModelMetadata, reference: ReferenceProfile
    ) -> ModelMetadata:
        """Write a new version and return its metadata (with its number and the graph's hash).

        The files are written and fsynced in a temporary folder first; the number is taken and
        the folder renamed under the model's lock. A publisher killed before the rename leaves
        only a hidden temporary folder, which later publishers sweep away.
        """
        d = self.model_dir(model)
        tmp = d / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            tmp.mkdir(parents=True)
        except OSError as e:  # no permission, read-only, or a path through a regular file
            raise RegistryNotWritable(_not_writable(self.root, e)) from e
        try:
            _write_file(tmp / MODEL_FILE, onnx)
            _write_file(tmp / metadata.reference_file, reference.model_dump_json().encode())
            with self._locked(model):
                version = self._next_version(model)
                final = metadata.model_copy(
                    update={"name": model, "version": version, "onnx_sha256": sha256_bytes(onnx)}
                )
                _write_file(
                    tmp / METADATA_FILE,
                    orjson.dumps(final.model_dump(mode="json"), option=orjson.OPT_INDENT_2),
                )
                _fsync_dir(tmp)
                os.rename(tmp, d / str(version))
                _fsync_dir(d)
                (d / ".last_version").write_text(str(version))
            self._sweep(d)
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _next_version(self, model: str) -> int:
        d = self.model_dir(model)
        used = [0, *self.versions(model)]
        with contextlib.suppress(FileNotFoundError, ValueError):
            used.append(int((d / ".last_version").read_text()))
        used.extend(p.to_version for p in self.history(model))
        return max(used) + 1

    def _sweep(self, d: Path) -> None:
        now = time.time()
        for p in d.glob(f"{_TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                    shutil.rmtree(p, ignore_errors=True)

    def _transition(
        self,
        model: str,
        action: Action,
        choose: Callable[[list[HistoryEntry]], int],
        actor: str,
        reason: str,
    ) -> HistoryEntry:
        with self._locked(model):
            return self._set_active(model, action, choose(self.history(model)), actor, reason)

    def check(self) -> None:
        pass  # a folder is always there; a missing one is an empty registry

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as e:
            raise RegistryNotWritable(_not_writable(self.root, e)) from None

    def _set_active(
        self,
        model: str,
        action: Action,
        version: int,
        actor: str,
        reason: str,
    ) -> HistoryEntry:
        d = self.model_dir(model)
        entry = HistoryEntry(
            time=time.time(),
            action=action,
            from_version=self.active(model),
            to_version=version,
            actor=actor,
            reason=reason,
        )
        tmp = d / f".active-{uuid.uuid4().hex}"
        _write_file(tmp, f"{version}\n".encode())
        os.replace(tmp, d / ACTIVE_FILE)
        with open(d / HISTORY_FILE, "ab") as f:
            f.write(entry.model_dump_json().encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(d)
        return entry
