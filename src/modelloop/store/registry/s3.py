"""The S3 backend (any S3 API: AWS, GCS interop, MinIO, SeaweedFS, Ceph RGW), via obstore.

    <prefix>/<model>/<version>/claim          created with If-None-Match: * — takes the number
    <prefix>/<model>/<version>/model.onnx     then the files
    <prefix>/<model>/<version>/reference.json
    <prefix>/<model>/<version>/metadata.json  last: the manifest; readers trust only these
    <prefix>/<model>/active                   {"version", "seq", "entry"}, swapped with If-Match
    <prefix>/<model>/history/<seq>.json       one object per entry, created with If-None-Match: *

A promote or rollback is committed by the compare-and-swap of `active`, which carries the
history entry it adds; the entry is then copied to `history/<seq>.json`, by the writer or, if
it died first, by the next writer (and readers add it meanwhile), so none is ever lost.
Credentials, region and endpoint come from the standard AWS variables.
"""

import contextlib
import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import obstore as obs
import orjson
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    NotModifiedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store
from pydantic import BaseModel

from modelloop.store.errors import (
    ModelNotFound,
    RegistryBusy,
    RegistryUnavailable,
    VersionNotFound,
)
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

CLAIM_FILE = "claim"
ACTIVE_KEY = "active"
HISTORY_DIR = "history"
_CAS_ATTEMPTS = 100
# obstore raises its own classes, and builtins for some (FileNotFoundError for a 404)
_FAILURES = (BaseError, OSError)


class Pointer(BaseModel):
    version: int
    seq: int
    entry: HistoryEntry


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


class S3Registry(Registry):
    remote = True

    def __init__(self, store: S3Store, bucket: str, prefix: str) -> None:
        super().__init__()
        self.store = store
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._known: set[str] = set()  # models seen with a version: versions are never deleted
        self._pointers: dict[str, tuple[str, Pointer | None]] = {}  # model -> (etag, pointer)
        self._entries: dict[str, HistoryEntry] = {}  # history objects are immutable

    @classmethod
    def from_url(cls, url: str, timeout_seconds: float = 10.0) -> "S3Registry":
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise RegistryUnavailable(f"registry {url!r}: expected s3://BUCKET/PREFIX")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
        store = S3Store(
            parsed.netloc,
            prefix=parsed.path.strip("/") or None,
            config={"conditional_put": "etag"},
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": dt.timedelta(seconds=min(3.0, timeout_seconds)),
                "timeout": dt.timedelta(seconds=timeout_seconds),
            },
            retry_config={
                "max_retries": 2,
                "retry_timeout": dt.timedelta(seconds=timeout_seconds),
                "backoff": {
                    "init_backoff": dt.timedelta(milliseconds=100),
                    "max_backoff": dt.timedelta(seconds=2),
                    "base": 2,
                },
            },
        )
        return cls(store, parsed.netloc, parsed.path)

    # -- errors at the edge ----------------------------------------------------------------

    def _unavailable(self, what: str, e: BaseException) -> RegistryUnavailable:
        text = str(e)
        if "NoSuchBucket" in text:
            return RegistryUnavailable(
                f"registry {self.location}: bucket {self.bucket!r} does not exist"
            )
        if isinstance(e, PermissionDeniedError | UnauthenticatedError) or any(
            code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
        ):
            return RegistryUnavailable(
                f"registry {self.location}: access to bucket {self.bucket!r} refused (check "
                f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the pod's role): {_first_line(e)}"
            )
        return RegistryUnavailable(f"registry {self.location}: {what} failed: {_first_line(e)}")

    def _get(self, key: str, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        """(body, etag), None if absent; NotModifiedError passes through."""
        try:
            options: Any = {"if_none_match": if_none_match} if if_none_match else None
            result = obs.get(self.store, key, options=options)
            return bytes(result.bytes()), str(result.meta["e_tag"] or "")
        except NotModifiedError:
            raise
        except (NotFoundError, FileNotFoundError) as e:
            if "NoSuchBucket" in str(e):
                raise self._unavailable(f"GET {key}", e) from None
            return None
        except _FAILURES as e:
            raise self._unavailable(f"GET {key}", e) from None

    def _put(self, key: str, data: bytes, mode: Any = "overwrite") -> str:
        """Write `key`; AlreadyExistsError / PreconditionError pass through for conditionals."""
        try:
            return str(obs.put(self.store, key, data, mode=mode)["e_tag"] or "")
        except (AlreadyExistsError, PreconditionError):
            raise
        except _FAILURES as e:
            raise self._unavailable(f"PUT {key}", e) from None

    def _list(self, prefix: str) -> list[str]:
        try:
            return [m["path"] for batch in obs.list(self.store, prefix) for m in batch]
        except _FAILURES as e:
            raise self._unavailable(f"LIST {prefix}", e) from None

    # -- reading ---------------------------------------------------------------------------

    def check(self) -> None:
        try:
            obs.list_with_delimiter(self.store, None)
        except _FAILURES as e:
            raise self._unavailable("LIST", e) from None

    def _names(self) -> list[str]:
        try:
            listing = obs.list_with_delimiter(self.store, None)
        except _FAILURES as e:
            raise self._unavailable("LIST", e) from None
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in listing["common_prefixes"]]

    def versions(self, model: str) -> list[int]:
        check_model_name(model)
        found = set()
        for key in self._list(f"{model}/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[1].isdigit() and parts[2] == METADATA_FILE:
                found.add(int(parts[1]))
        if found:
            self._known.add(model)
        return sorted(found)

    def _has_versions(self, model: str) -> bool:
        # A model seen with a version keeps it (versions are never deleted): no listing.
        return model in self._known or bool(self.versions(model))

    def _read(self, model: str, version: int, filename: str) -> bytes:
        check_model_name(model)
        found = self._get(f"{model}/{int(version)}/{filename}")
        # Callers read metadata.json (the manifest) first: onnx_bytes and reference do.
        if found is None:
            if not self.exists(model):
                raise ModelNotFound(model)
            raise VersionNotFound(model, version)
        return found[0]

    def _pointer(self, model: str) -> tuple[str, Pointer | None]:
        """The active pointer and its ETag, by a conditional GET on the last ETag seen."""
        check_model_name(model)
        cached = self._pointers.get(model)
        try:
            found = self._get(f"{model}/{ACTIVE_KEY}", cached[0] if cached and cached[0] else None)
        except NotModifiedError:
            assert cached is not None
            return cached
        except _FAILURES as e:
            raise self._unavailable("GET active", e) from None
        current = ("", None) if found is None else (found[1], Pointer.model_validate_json(found[0]))
        self._pointers[model] = current
        return current

    def active(self, model: str) -> int | None:
        pointer = self._pointer(model)[1]
        return pointer.version if pointer else None

    def history(self, model: str) -> list[HistoryEntry]:
        check_model_name(model)
        pointer = self._pointer(model)[1]
        entries: dict[int, HistoryEntry] = {}
        for key in self._list(f"{model}/{HISTORY_DIR}/"):
            name = key.rsplit("/", 1)[-1].removesuffix(".json")
            if not name.isdigit():
                continue
            entry = self._entries.get(key)
            if entry is None:
                found = self._get(key)
                if found is None:
                    continue
                entry = self._entries[key] = HistoryEntry.model_validate_json(found[0])
            entries[int(name)] = entry
        if pointer is not None:  # committed by its CAS, maybe not copied out yet
            entries.setdefault(pointer.seq, pointer.entry)
        return [entries[seq] for seq in sorted(entries)]

    # -- writing ---------------------------------------------------------------------------

    def check_writable(self) -> None:
        key = f".probe-{uuid.uuid4().hex}"
        self._put(key, b"probe")
        try:
            obs.delete(self.store, key)
        except _FAILURES as e:
            raise self._unavailable(f"DELETE {key}", e) from None

    def _claim(self, model: str) -> int:
        used = [0]
        for key in self._list(f"{model}/"):
            head = key.split("/")[1] if key.count("/") >= 2 else ""
            if head.isdigit():
                used.append(int(head))
        version = max(used) + 1
        for _ in range(_CAS_ATTEMPTS):
            try:
                self._put(f"{model}/{version}/{CLAIM_FILE}", b"", mode="create")
                return version
            except (AlreadyExistsError, PreconditionError):
                version += 1
        raise RegistryBusy(f"model {model!r}: no free version number after {_CAS_ATTEMPTS} tries")

    def publish(
        self, model: str, onnx: bytes, metadata: ModelMetadata, reference: ReferenceProfile
    ) -> ModelMetadata:
        """Claim a number, write the files, then the manifest. A publisher that dies part way
        leaves a claimed number without a manifest: invisible, and never reused."""
        check_model_name(model)
        version = self._claim(model)
        base = f"{model}/{version}"
        self._put(f"{base}/{MODEL_FILE}", onnx)
        self._put(f"{base}/{metadata.reference_file}", reference.model_dump_json().encode())
        final = metadata.model_copy(
            update={"name": model, "version": version, "onnx_sha256": sha256_bytes(onnx)}
        )
        manifest = orjson.dumps(final.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
        self._put(f"{base}/{METADATA_FILE}", manifest, mode="create")
        self._known.add(model)
        return final

    def _copy_out(self, model: str, pointer: Pointer) -> None:
        key = f"{model}/{HISTORY_DIR}/{pointer.seq:010d}.json"
        with contextlib.suppress(AlreadyExistsError, PreconditionError):  # already copied
            self._put(key, pointer.entry.model_dump_json().encode(), mode="create")
        self._entries[key] = pointer.entry

    def _transition(
        self,
        model: str,
        action: Action,
        choose: Callable[[list[HistoryEntry]], int],
        actor: str,
        reason: str,
    ) -> HistoryEntry:
        for attempt in range(_CAS_ATTEMPTS):
            etag, pointer = self._pointer(model)
            if pointer is not None:
                self._copy_out(model, pointer)
            version = choose(self.history(model))
            entry = HistoryEntry(
                time=time.time(),
                action=action,
                from_version=pointer.version if pointer else None,
                to_version=version,
                actor=actor,
                reason=reason,
            )
            new = Pointer(version=version, seq=pointer.seq + 1 if pointer else 1, entry=entry)
            mode: Any = {"e_tag": etag} if pointer is not None else "create"
            try:
                new_etag = self._put(f"{model}/{ACTIVE_KEY}", new.model_dump_json().encode(), mode)
            except (AlreadyExistsError, PreconditionError):
                self._pointers.pop(model, None)
                time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 20)))
                continue
            self._pointers[model] = (new_etag, new)
            self._copy_out(model, new)
            return entry
        raise RegistryBusy(f"model {model!r}: the active pointer kept changing; try again")
