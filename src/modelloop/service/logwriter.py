"""The prediction log writer: requests enqueue rows, a background thread commits them in batches.

The queue is bounded: when it is full, requests wait for room (backpressure) instead of rows
being dropped. When the database refuses a batch, the batch goes to the spool on local disk and
serving goes on; the writer replays the spool once the database answers again. `drain()`
flushes everything (to the database, or to the spool) before the process exits.
"""

import asyncio
import collections
import logging
import threading
import time

from modelloop.service.metrics import ServiceMetrics
from modelloop.service.spool import Spool
from modelloop.store.predictions import LogRow, PredictionLog

log = logging.getLogger("modelloop.service.log")


class LogWriter:
    def __init__(
        self,
        sink: PredictionLog,
        metrics: ServiceMetrics,
        capacity: int,
        batch_rows: int,
        flush_seconds: float,
        spool: Spool,
        spool_retry_seconds: float = 2.0,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.spool_retry_seconds = spool_retry_seconds
        self._next_replay = 0.0
        self._spooled = 0
        self.metrics = metrics
        self.capacity = capacity
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._rows: collections.deque[LogRow] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()
        self._enqueued = 0  # rows ever enqueued
        self._written = 0  # rows ever committed (or found already committed)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def depth(self) -> int:
        return self._enqueued - self._written

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    async def put(self, rows: list[LogRow]) -> None:
        """Enqueue rows; wait while the queue is full."""
        if self.depth + len(rows) > self.capacity and self.depth > 0:
            started = time.perf_counter()
            while self.depth + len(rows) > self.capacity and self.depth > 0:
                self._room.clear()
                self._wake.set()
                await self._room.wait()
            self.metrics.log_wait_seconds.inc(time.perf_counter() - started)
        self._rows.extend(rows)
        self._enqueued += len(rows)
        if len(self._rows) >= self.batch_rows:
            self._wake.set()

    async def written(self) -> None:
        """Wait until every row enqueued so far is committed."""
        target = self._enqueued
        if self._written >= target:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((target, fut))
        self._wake.set()
        await fut

    def _notify(self) -> None:
        """On the event loop: wake requests waiting for room or for rows to be written."""
        self.metrics.log_queue_rows.set(self.depth)
        if self.depth < self.capacity:
            self._room.set()
        done = [(t, f) for t, f in self._waiters if self._written >= t]
        if done:
            self._waiters = [(t, f) for t, f in self._waiters if self._written < t]
            for _, f in done:
                if not f.done():
                    f.set_result(None)

    def _take(self) -> list[LogRow]:
        """Up to `batch_rows` rows when the writer keeps up (short commits, short GIL holds);
        when a backlog builds, larger commits (up to 16x) cost less per row."""
        limit = self.batch_rows * 16 if len(self._rows) > self.batch_rows * 2 else self.batch_rows
        batch: list[LogRow] = []
        popleft = self._rows.popleft
        while self._rows and len(batch) < limit:
            batch.append(popleft())
        return batch

    def _commit(self, batch: list[LogRow]) -> None:
        """Commit a batch, or spool it when the database refuses it twice."""
        for attempt in range(2):
            try:
                inserted = self.sink.write(batch)
            except Exception as e:  # the database may be away; the rows must not be
                self.metrics.log_write_errors.inc()
                error = str(e).splitlines()[0] if str(e) else type(e).__name__
                if attempt == 0:
                    time.sleep(0.05)
                    continue
                path = self.spool.add(batch)
                self._spooled += len(batch)
                self.metrics.log_rows_spooled.inc(len(batch))
                self._next_replay = time.monotonic() + self.spool_retry_seconds
                log.warning(
                    "prediction log write of %d rows failed (%s); spooled to %s",
                    len(batch),
                    error,
                    path.name,
                )
                return
            self.metrics.log_rows_written.inc(inserted)
            return

    def _replay(self, force: bool = False) -> None:
        if not force and time.monotonic() < self._next_replay:
            return
        self._next_replay = time.monotonic() + self.spool_retry_seconds
        if not self.spool.files():
            return
        read, inserted = self.spool.replay(self.sink)
        if read:
            self.metrics.log_rows_replayed.inc(read)
            self.metrics.log_rows_written.inc(inserted)
            log.info("replayed %d spooled log rows (%d new to the database)", read, inserted)

    def _run(self) -> None:
        assert self._loop is not None
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            while self._rows:
                batch = self._take()
                self._commit(batch)
                self._written += len(batch)
                self._loop.call_soon_threadsafe(self._notify)
            try:
                self._replay(force=self._stop.is_set())
            except OSError as e:
                log.error("spool replay failed: %s", e)
            if self._stop.is_set() and not self._rows:
                return

    async def drain(self) -> None:
        """Flush every queued row and stop the writer thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._notify()
        log.info("prediction log drained: %d rows written", self._written)
