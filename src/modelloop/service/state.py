"""Everything the routes share, built once by `create_app` and passed to each router."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from modelloop.service.ids import IdMaker
from modelloop.service.logwriter import LogWriter
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.models import ModelManager
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import Database
from modelloop.store.events import Events
from modelloop.store.jobs import JobQueue
from modelloop.store.log import PredictionLog
from modelloop.store.registry import Registry


@dataclass
class Service:
    settings: ServiceSettings
    registry: Registry
    db: Database
    metrics: ServiceMetrics
    models: ModelManager
    log: LogWriter
    predictions: PredictionLog
    jobs: JobQueue
    events: Events
    ids: IdMaker = field(default_factory=IdMaker)
    draining: bool = False
    started: bool = False
    # Stopped first on SIGTERM, alongside HTTP and before the log drain: the gRPC server.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
