"""The registry watch: a poll in flight cannot undo an admin swap; a bucket is listed rarely."""

import asyncio
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry
from service_helpers import MODEL

from modelloop.service.metrics import ServiceMetrics
from modelloop.service.models import ModelManager
from modelloop.service.served import ServedModel
from modelloop.service.settings import ServiceSettings
from modelloop.store.registry import FolderRegistry


def test_a_poll_in_flight_does_not_reinstall_the_version_an_admin_rolled_back(home: Path) -> None:
    registry = FolderRegistry(home / "registry")
    settings = ServiceSettings(home=home, database_url=None, admin_token=None, poll_interval=60)
    manager = ModelManager(registry, settings, ServiceMetrics(CollectorRegistry()))
    release = threading.Event()
    loading_v2 = threading.Event()
    real_load = manager._load

    def slow_load(model: str, version: int) -> ServedModel:
        if version == 2 and not release.is_set():
            loading_v2.set()  # the poll has read "2" and is loading it
            release.wait(10)
        return real_load(model, version)

    async def scenario() -> None:
        await manager.start()
        assert manager.active[MODEL].served.version == 1
        registry.promote(MODEL, 2, "test", "someone else promotes")
        manager._load = slow_load  # type: ignore[method-assign]
        poll = asyncio.create_task(manager.refresh())
        await asyncio.to_thread(loading_v2.wait, 10)
        served = await asyncio.to_thread(real_load, MODEL, 1)
        threading.Timer(0.3, release.set).start()
        entry = await manager.commit(served, lambda: registry.rollback(MODEL, "test", "back"))
        await poll
        assert entry.to_version == 1

    asyncio.run(scenario())
    assert registry.active(MODEL) == 1
    assert manager.active[MODEL].served.version == 1


class CountingRegistry(FolderRegistry):
    """A folder that says it is remote (as a bucket does) and counts its listings."""

    remote = True

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listings = 0

    def models(self) -> list[str]:
        self.listings += 1
        return super().models()


def test_a_remote_registry_is_listed_every_15_s_and_its_pointers_read_every_poll(
    home: Path,
) -> None:
    registry = CountingRegistry(home / "registry")
    settings = ServiceSettings(home=home, database_url=None, admin_token=None, poll_interval=60)
    manager = ModelManager(registry, settings, ServiceMetrics(CollectorRegistry()))

    async def scenario() -> None:
        await manager.start()
        registry.promote(MODEL, 2, "test", "swap")
        for _ in range(5):
            assert await manager.refresh()

    asyncio.run(scenario())
    assert registry.listings == 1
    assert manager.active[MODEL].served.version == 2
