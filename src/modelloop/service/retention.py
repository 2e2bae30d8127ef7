"""Retention in the serving process (MODELLOOP_SERVICE_RETENTION): the store's `Retention`
applied every `retention_interval` in a worker thread, off the request path. A failed pass
(the database away) is counted, logged and retried at the next interval; it never stops the
service."""

import asyncio
import contextlib
import logging
import threading

from modelloop.service.metrics import ServiceMetrics
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import Database
from modelloop.store.retention import Pruned, Retention

log = logging.getLogger("modelloop.service")


class ServiceRetention:
    def __init__(self, db: Database, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self.retention = Retention(db, settings.retention_days * 86_400.0, settings.retention_rows)
        self.enabled = settings.service_retention and self.retention.bounded
        self.interval = settings.retention_interval
        self.metrics = metrics
        self.stopping = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._pass: asyncio.Future[Pruned | None] | None = None

    def prune_once(self) -> Pruned | None:
        """One pass (blocking); None when it failed."""
        try:
            pruned = self.retention.prune(stop=self.stopping)
        except Exception as e:  # the database away, or anything else: the next pass retries
            self.metrics.retention_errors.inc()
            # The driver's text may name the host and the user: the first line only.
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning("retention pass failed (retried in %g s): %s", self.interval, first)
            return None
        deleted = self.metrics.retention_deleted
        deleted.labels("predictions").inc(pruned.predictions)
        deleted.labels("feedback").inc(pruned.feedback)
        deleted.labels("drift_reports").inc(pruned.reports)
        if pruned:
            log.info(
                "retention: deleted %d logged predictions, %d feedback labels, %d drift reports",
                pruned.predictions,
                pruned.feedback,
                pruned.reports,
            )
        return pruned

    async def _run(self) -> None:
        while not self.stopping.is_set():
            self._pass = asyncio.ensure_future(asyncio.to_thread(self.prune_once))
            await asyncio.shield(self._pass)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        """Stop the loop; a pass in flight ends after its current batch, and is waited for
        (the database is closed next)."""
        self.stopping.set()
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._pass is not None:
            await self._pass
