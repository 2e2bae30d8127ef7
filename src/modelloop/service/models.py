"""Which versions serve: load the active ones, watch the registry, swap without a failed request.

A new version is loaded and smoke-tested in a worker thread; only then is one reference
replaced. Requests already holding the old `ServedModel` finish on it.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from modelloop.service.batching import Batcher
from modelloop.service.errors import NotFound, Unavailable
from modelloop.service.loading import LoadFailed, load_version
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.served import ServedModel
from modelloop.service.settings import ServiceSettings
from modelloop.store.errors import InvalidModelName, StoreError
from modelloop.store.names import check_model_name
from modelloop.store.registry import Registry

log = logging.getLogger("modelloop.service")


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

    def _slot(self, served: ServedModel) -> Slot:
        s = self.settings
        return Slot(
            served,
            Batcher(
                served, s.max_batch_rows, s.max_batch_wait_ms / 1000, s.inline_rows, s.batching
            ),
        )

    def _load(self, model: str, version: int) -> ServedModel:
        return ServedModel(
            load_version(self.registry, model, version, self.settings.onnx_threads), self.metrics
        )

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

    async def refresh(self) -> None:
        """Bring every model's serving version in line with the registry's active pointers."""
        async with self._lock:
            names = await asyncio.to_thread(self.registry.models)
            for name in names:
                try:
                    version = await asyncio.to_thread(self.registry.active, name)
                except (OSError, ValueError) as e:
                    log.warning("model %s: cannot read its active pointer: %s", name, e)
                    continue
                if version is None:
                    continue
                current = self.active.get(name)
                if current is not None and current.served.version == version:
                    continue
                if self._failed.get(name) == version:
                    continue
                try:
                    served = await self.load_checked(name, version)
                except LoadFailed as e:
                    self._failed[name] = version
                    kept = (
                        f"keeps serving version {current.served.version}"
                        if current
                        else ("has no version serving")
                    )
                    log.error("model %s: version %d not loaded (%s); %s", name, version, e, kept)
                    continue
                self.install(served)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                await self.refresh()
            except Exception:  # keep watching whatever one pass hit
                log.exception("registry poll failed")

    def get(self, model: str) -> Slot:
        slot = self.active.get(model)
        if slot is None:
            raise self._missing(model)
        return slot

    def _missing(self, model: str) -> NotFound | Unavailable:
        try:
            check_model_name(model)
        except InvalidModelName as e:
            return NotFound(str(e))
        if self.registry.exists(model):
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
