"""Which versions serve: load the active ones, watch the registry, swap without a failed request.

A new version is loaded and smoke-tested in a worker thread; only then is one reference
replaced. Requests already holding the old `ServedModel` finish on it. A remote registry's
versions are downloaded into a local cache first; while the store is away the service keeps
serving what it has (or, just started, what its cache served last) and retries with backoff.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from modelloop.service.batching import Batcher
from modelloop.service.cache import ModelCache
from modelloop.service.errors import NotFound, Unavailable
from modelloop.service.loading import LoadFailed, load_bytes, load_version
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.served import ServedModel
from modelloop.service.settings import ServiceSettings
from modelloop.store.errors import InvalidModelName, RegistryUnavailable, StoreError
from modelloop.store.names import check_model_name
from modelloop.store.registry import HistoryEntry, Registry

log = logging.getLogger("modelloop.service")

#: seconds between listings of a remote registry's models (a new model is served within this)
LIST_INTERVAL = 15.0
#: seconds a starting service waits for a remote registry before serving from its cache
CACHE_START_SECONDS = 3.0


@dataclass
class Slot:
    served: ServedModel
    batcher: Batcher


class ModelManager:
    def __init__(
        self, registry: Registry, settings: ServiceSettings, metrics: ServiceMetrics
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.active: dict[str, Slot] = {}
        self._others: OrderedDict[tuple[str, int], Slot] = OrderedDict()
        self._failed: dict[str, int] = {}  # model -> version that failed to load last time
        # (model, version) not active -> (until when, why) it failed to load: a corrupt version
        # is not read and hashed again on every request that names it.
        self._load_failed: dict[tuple[str, int], tuple[float, str]] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[Slot]] = {}
        self._lock = asyncio.Lock()
        self.cache = ModelCache(settings.home / "cache") if registry.remote else None
        self.registry_down = False
        self._names: list[str] = []
        self._listed_at = 0.0

    def _slot(self, served: ServedModel) -> Slot:
        s = self.settings
        return Slot(
            served,
            Batcher(
                served, s.max_batch_rows, s.max_batch_wait_ms / 1000, s.inline_rows, s.batching
            ),
        )

    def _load(self, model: str, version: int) -> ServedModel:
        threads = self.settings.onnx_threads
        if self.cache is None:
            return ServedModel(load_version(self.registry, model, version, threads), self.metrics)
        try:
            meta, data = self.cache.fetch(self.registry, model, version)
        except RegistryUnavailable:
            raise
        except (StoreError, OSError, ValueError) as e:
            raise LoadFailed(f"{model} v{version}: {e}") from e
        return ServedModel(load_bytes(meta, data, threads), self.metrics)

    def _registry_failed(self, operation: str, e: RegistryUnavailable) -> None:
        self.metrics.registry_errors.labels(operation).inc()
        if not self.registry_down:
            log.warning("registry unavailable, serving what is loaded: %s", e)
        self.registry_down = True

    async def load_checked(self, model: str, version: int) -> ServedModel:
        """Load and smoke-test in a worker thread; LoadFailed if it must not serve."""
        try:
            return await asyncio.to_thread(self._load, model, version)
        except LoadFailed:
            self.metrics.load_failures.labels(model).inc()
            raise

    def install(self, served: ServedModel) -> None:
        """Make `served` the active version of its model (one reference swap)."""
        old = self.active.get(served.name)
        self.active[served.name] = self._slot(served)
        self._failed.pop(served.name, None)
        self.metrics.active_version.labels(served.name).set(served.version)
        if self.cache is not None:  # what to serve if we restart while the store is away
            try:
                self.cache.remember_active(served.name, served.version)
            except OSError as e:
                log.warning(
                    "model %s: the cache could not record version %d: %s",
                    served.name,
                    served.version,
                    e,
                )
        self.metrics.model_info.labels(served.name, served.version_label, "active").set(1)
        if old is not None and old.served.version != served.version:
            self.metrics.model_info.remove(served.name, old.served.version_label, "active")
            self.metrics.swaps.labels(served.name).inc()
            log.info(
                "model %s: now serving version %d (was %d)",
                served.name,
                served.version,
                old.served.version,
            )
        elif old is None:
            log.info("model %s: serving version %d", served.name, served.version)

    async def commit(self, served: ServedModel, move: Callable[[], HistoryEntry]) -> HistoryEntry:
        """Move the registry pointer with `move` and serve its target, as one step.

        Held under the poller's lock: a poll that read the pointer before `move` cannot install
        what it read after `served` is in place (a promote and a rollback in quick succession
        would otherwise end on the older version). If the pointer landed elsewhere than
        `served` (someone moved it meanwhile), the registry's version is loaded instead."""
        async with self._lock:
            entry = await asyncio.to_thread(move)
            if entry.to_version == served.version:
                self.install(served)
            else:
                await self._refresh_one(served.name)
            return entry

    async def refresh(self) -> bool:
        """Bring every model's serving version in line with the registry's active pointers.
        False if the registry could not be reached (what serves stays as it is)."""
        async with self._lock:
            try:
                names = await self._model_names()
            except RegistryUnavailable as e:
                self._registry_failed("list", e)
                return False
            ok = True
            for name in names:
                ok = await self._refresh_one(name) and ok
            if ok and self.registry_down:
                log.info("registry reachable again")
                self.registry_down = False
            return ok

    async def _model_names(self) -> list[str]:
        """The registry's models. A bucket is listed at most every LIST_INTERVAL seconds (a
        LIST costs ~12x a GET on AWS S3); the pointers of the models known are read every poll."""
        now = time.monotonic()
        if self.registry.remote and self._names and now - self._listed_at < LIST_INTERVAL:
            return self._names
        self._names = await asyncio.to_thread(self.registry.models)
        self._listed_at = now
        return self._names

    async def _refresh_one(self, name: str) -> bool:
        try:
            version = await asyncio.to_thread(self.registry.active, name)
        except RegistryUnavailable as e:
            self._registry_failed("active", e)
            return False
        except (OSError, ValueError) as e:
            log.warning("model %s: cannot read its active pointer: %s", name, e)
            return True
        if version is None:
            return True
        current = self.active.get(name)
        if current is not None and current.served.version == version:
            return True
        if self._failed.get(name) == version:
            return True
        try:
            served = await self.load_checked(name, version)
        except RegistryUnavailable as e:
            self._registry_failed("load", e)
            return False
        except LoadFailed as e:
            self._failed[name] = version
            kept = (
                f"keeps serving version {current.served.version}"
                if current
                else ("has no version serving")
            )
            log.error("model %s: version %d not loaded (%s); %s", name, version, e, kept)
            return True
        self.install(served)
        return True

    async def start(self) -> None:
        """The first load. With a remote registry away, serve what the cache served last: a
        store that does not answer within CACHE_START_SECONDS is not waited for when the cache
        has something to serve (the watch keeps trying)."""
        cache = self.cache
        remembered = {} if cache is None else await asyncio.to_thread(cache.last_active)
        if cache is None or not remembered:
            await self.refresh()
            return
        try:
            if await asyncio.wait_for(self.refresh(), CACHE_START_SECONDS):
                return
        except TimeoutError:
            self._registry_failed(
                "list",
                RegistryUnavailable(
                    f"registry {self.registry.location}: no answer within "
                    f"{CACHE_START_SECONDS:g} s at start"
                ),
            )
        for name, version in remembered.items():
            if name in self.active:
                continue
            found = await asyncio.to_thread(cache.cached, name, version)
            if found is None:
                continue
            try:
                loaded = await asyncio.to_thread(load_bytes, *found, self.settings.onnx_threads)
            except LoadFailed as e:
                log.error("model %s: cached version %d not loaded: %s", name, version, e)
                continue
            self.install(ServedModel(loaded, self.metrics))
            log.warning("model %s: serving version %d from the local cache", name, version)

    async def watch(self) -> None:
        """Poll every `poll_interval`; while the registry is away, back off up to 30 s."""
        delay = self.settings.poll_interval
        while True:
            await asyncio.sleep(delay)
            try:
                ok = await self.refresh()
            except Exception:  # keep watching whatever one pass hit
                log.exception("registry poll failed")
                ok = False
            base = self.settings.poll_interval
            delay = base if ok else min(max(delay * 2, base), max(30.0, base))

    def get(self, model: str) -> Slot:
        slot = self.active.get(model)
        if slot is None:
            raise self._missing(model)
        return slot

    def loaded(self, model: str, version: int) -> ServedModel | None:
        """`version` of `model` if it is loaded (active or not), without loading it; safe from
        a worker thread (it only reads)."""
        slot = self.active.get(model)
        if slot is not None and slot.served.version == version:
            return slot.served
        other = self._others.get((model, version))
        return other.served if other is not None else None

    def _missing(self, model: str) -> NotFound | Unavailable:
        try:
            check_model_name(model)
        except InvalidModelName as e:
            return NotFound(str(e))
        try:
            known = self.registry.exists(model)
        except RegistryUnavailable:
            return Unavailable(f"model {model!r} is not loaded and the registry is unreachable")
        if known:
            return Unavailable(f"model {model!r} has no version serving yet")
        return NotFound(f"model {model!r} not found")

    async def get_version(self, model: str, version: int) -> Slot:
        slot = self.active.get(model)
        if slot is not None and slot.served.version == version:
            return slot
        key = (model, version)
        cached = self._others.get(key)
        if cached is not None:
            self._others.move_to_end(key)
            return cached
        self._check_failed(key)
        try:
            check_model_name(model)
        except InvalidModelName as e:
            raise NotFound(str(e)) from None
        if version not in await asyncio.to_thread(self.registry.versions, model):
            if not self.registry.exists(model):
                raise NotFound(f"model {model!r} not found")
            raise NotFound(f"model {model!r} has no version {version}")
        # Again: it may have loaded, or failed to, while the versions were listed.
        cached = self._others.get(key)
        if cached is not None:
            return cached
        self._check_failed(key)
        # Requests for one version while it loads wait for that one load.
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_other(model, version))
            self._loading[key] = loading
            loading.add_done_callback(lambda task: self._loaded(key, task))
        return await asyncio.shield(loading)

    def _loaded(self, key: tuple[str, int], task: "asyncio.Future[Slot]") -> None:
        self._loading.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, even if every request waiting for it has gone

    def _check_failed(self, key: tuple[str, int]) -> None:
        failed = self._load_failed.get(key)
        if failed is not None:
            if time.monotonic() < failed[0]:
                raise Unavailable(failed[1])
            del self._load_failed[key]

    async def _load_other(self, model: str, version: int) -> Slot:
        key = (model, version)
        try:
            served = await self.load_checked(model, version)
        except LoadFailed as e:
            # Remembered for a poll interval: files replaced meanwhile are read after it.
            self._load_failed[key] = (time.monotonic() + self.settings.poll_interval, str(e))
            raise Unavailable(str(e)) from None
        slot = self._slot(served)
        self._others[key] = slot
        self.metrics.model_info.labels(model, served.version_label, "loaded").set(1)
        while len(self._others) > self.settings.loaded_versions:
            (m, v), _ = self._others.popitem(last=False)
            self.metrics.model_info.remove(m, str(v), "loaded")
        return slot

    def require_known(self, model: str) -> str:
        """`model` if the registry has it, else NotFound (a bad name is not found either)."""
        try:
            check_model_name(model)
        except InvalidModelName as e:
            raise NotFound(str(e)) from None
        if not self.registry.exists(model):
            raise NotFound(f"model {model!r} not found")
        return model

    def versions_of(self, model: str) -> list[int]:
        try:
            return self.registry.versions(model)
        except (InvalidModelName, StoreError):
            return []
