"""The prediction log writer: requests enqueue rows, a background thread commits them in batches.

A request hands over its rows as log rows (caller ids) or as one chunk of columns (generated
ids, store/log/chunk.py); the spool and the quarantine take rows, so a chunk that goes there
goes as its rows.

A row is kept until it is somewhere durable: in memory (bounded in rows and in estimated
bytes), then in the database or, while the database is away, in the spool on local disk, which
is replayed once the database answers again. Rows the database refuses are set aside in the
spool's quarantine (`salvage.py`). Nothing stops the writer thread: every failure is counted
(`modelloop_log_writer_errors_total{stage}`), logged when the state changes, and retried with
backoff.

A full queue makes requests wait for room (backpressure), at most `wait_seconds`, then 503.
When neither the database nor the spool takes rows the writer is unhealthy: readiness says so
and a full queue answers 503 at once. `drain()` flushes everything before the process exits,
retrying for at most `drain_seconds`, and says how many rows it could not keep.
"""

import asyncio
import collections
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable

from modelloop.service.errors import Unavailable
from modelloop.service.logtarget import Health, Target
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.salvage import DatabaseAway, Replayer, describe, write_salvaging
from modelloop.service.spool import Spool
from modelloop.store.log import Chunk, Entry, LogRow, PredictionLog
from modelloop.store.log.chunk import log_rows

log = logging.getLogger("modelloop.service.log")

# A queued row's estimated memory: its dicts, plus its share of the request body several times
# over (measured with tracemalloc: a 158-byte row takes 1.2 kB parsed, a 2.4 kB one 15.8 kB).
ROW_BYTES = 512
BODY_FACTOR = 6
REPLAY_BUDGET = 0.5  # seconds of spool replay between two looks at the queue
DRAIN_RETRY = 1.0  # while draining, targets are retried at least this often
EXPIRY_TICK = 0.25  # seconds between two looks for requests that waited too long


class LogWriter:
    def __init__(
        self,
        sink: PredictionLog,
        metrics: ServiceMetrics,
        spool: Spool,
        *,
        capacity_rows: int = 100_000,
        capacity_bytes: int = 64 << 20,
        batch_rows: int = 250,
        flush_seconds: float = 0.2,
        wait_seconds: float = 10.0,
        drain_seconds: float = 20.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.spool = spool
        self.capacity_rows = capacity_rows
        self.capacity_bytes = capacity_bytes
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.wait_seconds = wait_seconds
        self.drain_seconds = drain_seconds
        self.retry_seconds = retry_seconds
        self._health = Health(metrics, spool.directory, lambda: self._post(self._notify))
        self._db = self._health.db
        self._disk = self._health.disk
        self._aside = Target(metrics.log_writer_errors.labels("quarantine"))
        self._bug = Target(metrics.log_writer_errors.labels("internal"), base=0.05)
        self._queue: collections.deque[tuple[list[LogRow] | Chunk, int]] = collections.deque()
        self._pending: list[Entry] = []  # taken from the queue, not yet kept anywhere
        self._pending_rows = 0
        self._sent = False  # _pending was sent to the database before (its commit may hold)
        self._pending_bytes = 0
        self._held: list[LogRow] = []  # refused by the database, not yet quarantined
        self._held_error = ""  # the database's reason for the first of them
        self._enqueued = self._taken = self._written = 0  # rows ever: counted by each side
        self._bytes_in = self._bytes_out = 0
        self._next_replay = 0.0
        self._replayer = Replayer(spool, sink, metrics, retry_seconds)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drain_deadline = math.inf
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()
        self._waiters: list[tuple[int, float, asyncio.Future[None]]] = []  # rows, deadline
        self._expiry: asyncio.TimerHandle | None = None
        self._tick = min(EXPIRY_TICK, wait_seconds / 4)
        self.committed = self.spooled = self.quarantined = self.lost = 0  # this process's rows

    @property
    def depth(self) -> int:
        return self._enqueued - self._written

    @property
    def queue_bytes(self) -> int:
        return self._bytes_in - self._bytes_out

    @property
    def reason(self) -> str:
        return "the prediction log cannot be written: neither the database nor the spool takes rows"

    @property
    def healthy(self) -> bool:
        """The database or the spool takes rows."""
        return self._health.healthy

    def retry_after(self) -> float:
        return self._health.retry_after()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    # -- the event loop's side ---------------------------------------------------------------

    async def put(self, rows: list[LogRow] | Chunk, body_bytes: int) -> None:
        """Enqueue a request's rows, or its chunk (`body_bytes`: the size of the request);
        wait while the queue is full, at most `wait_seconds`. Raises Unavailable (503)."""
        n = len(rows)
        size = n * ROW_BYTES + body_bytes * BODY_FACTOR
        depth = self._enqueued - self._written
        if depth > 0 and (  # self._full(n, size), inline: this is every request's path
            depth + n > self.capacity_rows
            or self._bytes_in - self._bytes_out + size > self.capacity_bytes
        ):
            await self._wait_for_room(n, size)
        self._enqueued += n
        self._bytes_in += size
        self._queue.append((rows, size))
        if self._enqueued - self._taken >= self.batch_rows and self.healthy:
            self._wake.set()

    def _full(self, n: int, size: int) -> bool:
        depth = self._enqueued - self._written
        return depth > 0 and (
            depth + n > self.capacity_rows
            or self._bytes_in - self._bytes_out + size > self.capacity_bytes
        )

    async def _wait_for_room(self, n: int, size: int) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.wait_seconds):
                while self._full(n, size):
                    if not self.healthy:
                        raise Unavailable(
                            "the prediction log is full and cannot be written now; try again",
                            self.retry_after(),
                        )
                    self._room.clear()
                    self._wake.set()
                    await self._room.wait()
        except TimeoutError:
            raise Unavailable(
                "the prediction log writer is behind; try again", self.retry_after()
            ) from None
        finally:
            self.metrics.log_wait_seconds.inc(time.perf_counter() - started)

    async def written(self) -> None:
        """Wait until every row enqueued so far is committed or spooled, at most
        `wait_seconds` (and one EXPIRY_TICK). Raises Unavailable (503) on timeout or while the
        writer is unhealthy."""
        target = self._enqueued
        if self._written >= target:
            return
        if not self.healthy:
            raise Unavailable(self.reason + "; try again", self.retry_after())
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[None] = loop.create_future()
        # No timer per request (asyncio.timeout cost durable mode ~3 % at 1 row): one tick
        # expires every waiter past its deadline.
        self._waiters.append((target, loop.time() + self.wait_seconds, fut))
        self._wake.set()
        if self._expiry is None:
            self._expiry = loop.call_later(self._tick, self._expire)
        await fut

    def _expire(self) -> None:
        """On the event loop: fail the waiters whose rows were not kept in time."""
        assert self._loop is not None
        self._expiry = None
        now = self._loop.time()
        late = [w for w in self._waiters if w[1] <= now]
        if late:
            self._waiters = [w for w in self._waiters if w[1] > now]
            for _, _, f in late:
                if not f.done():
                    f.set_exception(
                        Unavailable(
                            "the prediction log did not write the rows in time; try again",
                            self.retry_after(),
                        )
                    )
        if self._waiters:
            self._expiry = self._loop.call_later(self._tick, self._expire)

    def _notify(self) -> None:
        """On the event loop: wake requests waiting for room or for rows to be written."""
        self.metrics.log_queue_rows.set(self.depth)
        self._room.set()
        if not self._waiters:
            return
        written = self._written
        done = [w for w in self._waiters if written >= w[0]]
        if done:
            self._waiters = [w for w in self._waiters if written < w[0]]
            for _, _, f in done:
                if not f.done():
                    f.set_result(None)
        if not self.healthy:  # waiting would not help: the rest answer 503 now
            waiters, self._waiters = self._waiters, []
            for _, _, f in waiters:
                if not f.done():
                    f.set_exception(Unavailable(self.reason + "; try again", self.retry_after()))

    def _post(self, callback: Callable[[], None]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process exits
                self._loop.call_soon_threadsafe(callback)

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._step():
                    return
                outage = self._bug.recover()
                if outage is not None:
                    log.info("prediction log writer: going again after %.1f s of errors", outage)
            except Exception as e:  # a bug: count it, keep the rows, go on
                if self._bug.fail(describe(e)):
                    log.exception("prediction log writer: unexpected error (it goes on)")
                if self._stop.is_set() and time.monotonic() >= self._drain_deadline:
                    self._give_up()
                    return
                time.sleep(max(0.0, self._bug.next_try - time.monotonic()))

    def _step(self) -> bool:
        """One round: write what is queued, probe what fails, replay the spool. True when
        a drain has finished."""
        self._wake.wait(self._timeout())
        self._wake.clear()
        stopping = self._stop.is_set()
        if stopping:
            self._db.hurry(DRAIN_RETRY)
            self._disk.hurry(DRAIN_RETRY)
        self._flush()
        self._probe()
        self._replay(stopping)
        return stopping and self._finished()

    def _timeout(self) -> float:
        if self._stop.is_set() and not (self._pending or self._queue or self._held):
            return 0.0
        now = time.monotonic()
        failing = [t.next_try - now for t in (self._db, self._disk, self._aside) if t.failing]
        if self._pending or self._held:  # stuck: until the next retry
            return max(0.01, min(failing, default=self.flush_seconds))
        return max(0.01, min([self.flush_seconds, *failing]))

    def _take(self) -> tuple[list[Entry], int, int]:
        """Up to `batch_rows` rows when the writer keeps up (short commits, short GIL holds);
        when a backlog builds, larger commits (up to 16x) cost less per row. The entries,
        their rows and their bytes."""
        queued = self._enqueued - self._taken
        limit = self.batch_rows * 16 if queued > self.batch_rows * 2 else self.batch_rows
        batch: list[Entry] = []
        n = size = 0
        popleft = self._queue.popleft
        while self._queue and n < limit:
            rows, nbytes = popleft()
            if isinstance(rows, Chunk):
                batch.append(rows)
            else:
                batch += rows
            n += len(rows)
            size += nbytes
        self._taken += n
        return batch, n, size

    def _flush(self) -> None:
        if self._held and self._aside.due(time.monotonic()):
            self._set_aside([], self._held_error)
        while self._pending or self._queue:
            if not self._pending:
                self._pending, self._pending_rows, self._pending_bytes = self._take()
                self._sent = False
            if not self._keep(self._pending, self._pending_rows):
                return
            self._written += self._pending_rows
            self._bytes_out += self._pending_bytes
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            self._post(self._notify)

    def _keep(self, batch: list[Entry], rows: int) -> bool:
        """Put a batch (of `rows` rows) in the database, else in the spool; False if neither
        took it."""
        now = time.monotonic()
        if self._db.due(now) and (not self._db.failing or self._probe_db()):
            try:
                fresh, self._sent = not self._sent, True
                salvaged = write_salvaging(self.sink, batch, fresh)
            except Exception as e:
                self.metrics.log_write_errors.inc()
                away = e if isinstance(e, DatabaseAway) else DatabaseAway(describe(e), False)
                self._health.db_failed(away.error, away.answers)
            else:
                self._db_ok()
                self.metrics.log_rows_written.inc(salvaged.inserted)
                self.committed += rows - len(salvaged.bad)
                if salvaged.bad:
                    self._set_aside(salvaged.bad, salvaged.error)
                return True
        if self._disk.due(now):
            try:
                self.spool.add(log_rows(batch))
            except Exception as e:
                self._health.disk_failed(describe(e))
            else:
                self._health.disk_ok()
                self.spooled += rows
                self.metrics.log_rows_spooled.inc(rows)
                self._next_replay = max(self._next_replay, now + self.retry_seconds)
                return True
        return False

    def _set_aside(self, bad: list[LogRow], error: str) -> None:
        """Quarantine rows the database refused; hold them while the quarantine fails."""
        rows = self._held + bad
        error = self._held_error or error
        try:
            kept = self.spool.quarantine(None, rows)
        except Exception as e:
            if self._aside.fail(describe(e)):
                log.error(
                    "prediction log: %d rows refused by the database (%s) cannot be set aside "
                    "in %s (%s); held in memory",
                    len(rows),
                    error,
                    self.spool.quarantine_dir,
                    describe(e),
                )
            self._held, self._held_error = rows, error
            return
        self._aside.recover()
        self._held, self._held_error = [], ""
        self.quarantined += len(rows)
        self.metrics.log_rows_quarantined.inc(len(rows))
        log.warning(
            "prediction log: %d rows refused by the database, set aside in %s (first error: %s)",
            len(rows),
            ", ".join(str(p) for p in kept),
            error,
        )

    def _probe(self) -> None:
        """Look again at failing targets when no rows are waiting to tell (idle)."""
        now = time.monotonic()
        if self._pending:
            return
        if self._db.failing and self._db.due(now):
            self._probe_db()
        if self._disk.failing and self._disk.due(now):
            try:
                self.spool.probe()
            except Exception as e:
                self._health.disk_failed(describe(e))
            else:
                self._health.disk_ok()

    def _probe_db(self) -> bool:
        try:
            ok = self.sink.writable()
        except Exception:
            ok = False
        if ok:
            self._db_ok()
        else:
            self._health.db_failed("it does not answer, or takes no writes", False)
        return ok

    def _replay(self, stopping: bool) -> None:
        now = time.monotonic()
        if self._db.failing or (not stopping and now < self._next_replay):
            return
        self._next_replay = now + self.retry_seconds
        try:
            if self._replayer.run(self._drain_deadline if stopping else now + REPLAY_BUDGET):
                self._db_ok()
        except DatabaseAway as e:
            self._health.db_failed(e.error, e.answers)

    def _db_ok(self) -> None:
        if self._health.db_ok():
            self._next_replay = 0.0  # back: replay the spool at once

    def _finished(self) -> bool:
        """While draining: True once every row is kept, or the drain's time is up."""
        if not (self._pending or self._queue or self._held):
            return True
        if time.monotonic() < self._drain_deadline:
            return False
        self._give_up()
        return True

    def _give_up(self) -> None:
        self.lost = self.depth + len(self._held)
        log.error(
            "prediction log: %d rows LOST: not kept within the drain's %.0f s (database: %s; "
            "spool %s: %s)",
            self.lost,
            self.drain_seconds,
            self._db.error if self._db.failing else "takes rows, refused some",
            self.spool.directory,
            self._disk.error if self._disk.failing else "takes files",
        )

    async def drain(self) -> None:
        """Keep every queued row (database, else spool) and stop the writer thread."""
        self._drain_deadline = time.monotonic() + self.drain_seconds
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.drain_seconds + 15.0)
            if self._thread.is_alive():
                self.lost = self.depth + len(self._held)
                log.error("prediction log writer still busy: %d rows LOST", self.lost)
        self._notify()
        (log.error if self.lost else log.info)(
            "prediction log drained: %d rows written to the database, %d spooled, "
            "%d quarantined, %d lost",
            self.committed,
            self.spooled,
            self.quarantined,
            self.lost,
        )
