"""Where the log writer puts rows (the database, the spool), and whether it takes them now.

A target that fails is retried with a doubling delay (up to a cap), and its state changes
are what gets logged: once when it starts failing, once when it takes rows again, never on
each retry.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from modelloop.service.metrics import ServiceMetrics

log = logging.getLogger("modelloop.service.log")


class Target:
    def __init__(self, errors: Counter, base: float = 0.5, cap: float = 5.0) -> None:
        self.failing = False
        self.error = ""  # the error that started the failure
        self.since = 0.0
        self.failures = 0
        self.next_try = 0.0
        self._errors = errors
        self._base = base
        self._cap = cap
        self._delay = base

    def due(self, now: float) -> bool:
        """Whether to try it now: it takes rows, or its retry time has come."""
        return not self.failing or now >= self.next_try

    def fail(self, error: str) -> bool:
        """Count a failure and space out the next try; True if it took rows until now."""
        self._errors.inc()
        now = time.monotonic()
        started = not self.failing
        if started:
            self.failing, self.error, self.since, self.failures = True, error, now, 0
            self._delay = self._base
        else:
            self._delay = min(self._delay * 2, self._cap)
        self.failures += 1
        self.next_try = now + self._delay
        return started

    def recover(self) -> float | None:
        """It takes rows (again); the seconds it failed for, or None if it was not failing."""
        if not self.failing:
            return None
        self.failing = False
        self._delay = self._base
        return time.monotonic() - self.since

    def hurry(self, cap: float) -> None:
        """Retry at least every `cap` seconds from now on (a drain has little time)."""
        self._cap = min(self._cap, cap)
        self._delay = min(self._delay, self._cap)
        self.next_try = min(self.next_try, time.monotonic() + self._cap)


class Health:
    """The writer's two targets, and whether between them rows make progress: when neither
    takes rows the writer is unhealthy (readiness false, the gauge 0, a full queue 503s)."""

    def __init__(self, metrics: ServiceMetrics, spool_dir: Path, on_change: Callable[[], None]):
        errors = metrics.log_writer_errors
        self.db = Target(errors.labels("database"))
        self.disk = Target(errors.labels("spool"))
        self.healthy = True
        self._gauge = metrics.log_writer_healthy
        self._spool_dir = spool_dir
        self._on_change = on_change

    def retry_after(self) -> float:
        now = time.monotonic()
        waits = [t.next_try - now for t in (self.db, self.disk) if t.failing]
        return min(30.0, max(1.0, min(waits, default=1.0)))

    def db_failed(self, error: str, answers: bool) -> None:
        if self.db.fail(error):
            log.warning(
                "prediction log: the database %s (%s); rows go to the spool %s until it is back",
                "takes no writes" if answers else "is away",
                error,
                self._spool_dir,
            )
        self._update()

    def db_ok(self) -> bool:
        """The database took rows; True if it had been failing."""
        outage = self.db.recover()
        if outage is None:
            return False
        log.info(
            "prediction log: the database takes rows again after %.1f s (%d failed tries)",
            outage,
            self.db.failures,
        )
        self._update()
        return True

    def disk_failed(self, error: str) -> None:
        if self.disk.fail(error):
            log.error("prediction log: the spool %s takes no files (%s)", self._spool_dir, error)
        self._update()

    def disk_ok(self) -> None:
        outage = self.disk.recover()
        if outage is not None:
            log.info("prediction log: the spool takes files again after %.1f s", outage)
            self._update()

    def _update(self) -> None:
        healthy = not (self.db.failing and self.disk.failing)
        if healthy == self.healthy:
            return
        self.healthy = healthy
        self._gauge.set(int(healthy))
        if healthy:
            log.info("prediction log writer makes progress again")
        else:
            log.error(
                "prediction log writer cannot make progress: neither the database (%s) nor the "
                "spool (%s) takes rows; rows are held in memory, readiness is false",
                self.db.error,
                self.disk.error,
            )
        self._on_change()
