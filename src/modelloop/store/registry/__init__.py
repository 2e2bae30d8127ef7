"""The model registry: one interface, a folder backend and an S3 backend, one contract.

- a version is visible completely or not at all: its files first, its manifest
  (`metadata.json`) last; readers trust manifested versions only;
- version numbers are never reused, even when two trainers publish at once;
- the active pointer changes by compare-and-swap, so two promoters never lose an update;
- the history of promotes and rollbacks is append-safe under concurrency;
- `model.onnx`'s sha256 is checked on every load.

`open_registry("s3://bucket/prefix")` or `open_registry(path)` picks the backend.
"""

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from modelloop.store.errors import (
    CorruptVersion,
    InvalidModelName,
    ModelNotFound,
    NoActiveVersion,
    NothingToRollBack,
)
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.names import check_model_name

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"

log = logging.getLogger("modelloop.store")

Action = Literal["promote", "rollback"]


class HistoryEntry(BaseModel):
    time: float
    action: Action
    from_version: int | None
    to_version: int
    actor: str
    reason: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def active_stack(history: list[HistoryEntry]) -> list[int]:
    """The versions that were active, oldest first, with rolled-back ones popped off."""
    stack: list[int] = []
    for entry in history:
        if entry.action == "promote":
            if not stack or stack[-1] != entry.to_version:
                stack.append(entry.to_version)
        elif stack:
            stack.pop()
            if not stack or stack[-1] != entry.to_version:
                stack.append(entry.to_version)
    return stack


class Registry(ABC):
    """What every backend offers. Reads raise the store's errors, never a library's."""

    #: where it lives, for messages: a folder path or s3://bucket/prefix
    location: str
    #: True when reads cross a network (the service then keeps a local cache)
    remote: bool = False

    def __init__(self) -> None:
        self._skipped: set[str] = set()

    # -- what a backend implements ---------------------------------------------------------

    @abstractmethod
    def _names(self) -> list[str]:
        """Every name in the root that could be a model, valid or not."""

    @abstractmethod
    def versions(self, model: str) -> list[int]:
        """The manifested versions of `model`, ascending."""

    @abstractmethod
    def _read(self, model: str, version: int, filename: str) -> bytes:
        """One file of a version; ModelNotFound / VersionNotFound when it is not there."""

    @abstractmethod
    def active(self, model: str) -> int | None: ...

    @abstractmethod
    def history(self, model: str) -> list[HistoryEntry]: ...

    @abstractmethod
    def publish(
        self, model: str, onnx: bytes, metadata: ModelMetadata, reference: ReferenceProfile
    ) -> ModelMetadata:
        """Write a new version under a fresh number and return its metadata."""

    @abstractmethod
    def _transition(
        self,
        model: str,
        action: Action,
        choose: Callable[[list[HistoryEntry]], int],
        actor: str,
        reason: str,
    ) -> HistoryEntry:
        """Atomically: read the history, pick the target with `choose`, move the pointer."""

    @abstractmethod
    def check_writable(self) -> None:
        """RegistryNotWritable (or RegistryUnavailable) unless a publish could succeed."""

    @abstractmethod
    def check(self) -> None:
        """RegistryUnavailable if the store cannot be reached."""

    # -- the shared contract ---------------------------------------------------------------

    def models(self) -> list[str]:
        """Model names with at least one version. Names that are not model names (a
        `lost+found`, a stray folder) are skipped and logged once."""
        found = []
        for name in self._names():
            try:
                check_model_name(name)
            except InvalidModelName:
                if name not in self._skipped:
                    self._skipped.add(name)
                    log.warning("registry %s: skipping %r: not a model name", self.location, name)
                continue
            if self._has_versions(name):
                found.append(name)
        return sorted(found)

    def _has_versions(self, model: str) -> bool:
        return bool(self.versions(model))

    def exists(self, model: str) -> bool:
        return bool(self.versions(model))

    def metadata(self, model: str, version: int) -> ModelMetadata:
        return ModelMetadata.model_validate_json(self._read(model, version, METADATA_FILE))

    def reference(self, model: str, version: int) -> ReferenceProfile:
        meta = self.metadata(model, version)
        return ReferenceProfile.model_validate_json(self._read(model, version, meta.reference_file))

    def onnx_bytes(self, model: str, version: int) -> bytes:
        """The version's ONNX graph, after checking its sha256 against the metadata."""
        meta = self.metadata(model, version)
        data = self._read(model, version, MODEL_FILE)
        digest = sha256_bytes(data)
        if digest != meta.onnx_sha256:
            raise CorruptVersion(
                f"model {model!r} version {version}: {MODEL_FILE} sha256 {digest[:12]}… does "
                f"not match metadata {meta.onnx_sha256[:12]}…"
            )
        return data

    def require_active(self, model: str) -> int:
        version = self.active(model)
        if version is None:
            if not self.exists(model):
                raise ModelNotFound(model)
            raise NoActiveVersion(model)
        return version

    def promote(self, model: str, version: int, actor: str, reason: str) -> HistoryEntry:
        """Make `version` the active one. Its graph is checked against its hash first."""
        self.onnx_bytes(model, version)
        return self._transition(model, "promote", lambda _: version, actor, reason)

    def rollback(self, model: str, actor: str, reason: str) -> HistoryEntry:
        """Return to the version that was active before the current one."""

        def target(history: list[HistoryEntry]) -> int:
            stack = active_stack(history)
            if len(stack) < 2:
                if not self.exists(model):
                    raise ModelNotFound(model)
                raise NothingToRollBack(model)
            self.onnx_bytes(model, stack[-2])
            return stack[-2]

        return self._transition(model, "rollback", target, actor, reason)

    def rollback_target(self, model: str) -> int | None:
        stack = active_stack(self.history(model))
        return stack[-2] if len(stack) >= 2 else None


def open_registry(location: str | Path) -> Registry:
    """`s3://bucket/prefix` opens the S3 backend; anything else is a folder."""
    if isinstance(location, str) and location.startswith("s3://"):
        from modelloop.store.registry.s3 import S3Registry

        return S3Registry.from_url(location)
    return FolderRegistry(Path(location))


# The folder backend is the embedded default; S3's client is imported only when a URL asks.
from modelloop.store.registry.folder import FolderRegistry  # noqa: E402

__all__ = [
    "METADATA_FILE",
    "MODEL_FILE",
    "FolderRegistry",
    "HistoryEntry",
    "Registry",
    "active_stack",
    "open_registry",
    "sha256_bytes",
]
