"""`modelloop monitor`: the monitor loop, with /metrics on its own port; SIGTERM stops it."""

import logging
import signal
import threading
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

from modelloop.monitoring.metrics import MonitorMetrics
from modelloop.monitoring.settings import MonitorSettings
from modelloop.monitoring.worker import Monitor
from modelloop.store.database import open_database
from modelloop.store.registry import open_registry

log = logging.getLogger("modelloop.monitor")


def run_monitor(settings: MonitorSettings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry)
    db = open_database(settings.database)
    monitor = Monitor(settings, db, open_registry(settings.registry_location), metrics)
    server, thread = start_http_server(
        settings.monitor_port, settings.monitor_host, registry=registry
    )
    log.info(
        "monitor: /metrics on http://%s:%d, checking every %.1f s",
        settings.monitor_host,
        settings.monitor_port,
        settings.monitor_interval,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("monitor: stopping (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        monitor.run(stop)
    finally:
        server.shutdown()
        thread.join(5)
        db.dispose()
