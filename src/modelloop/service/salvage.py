"""When a log write fails: is the database away, or are some of the rows bad?

The store says which (`RowsRejected`: the database refused a value); for any other error a
cheap probe asks whether the database would take a write at all. If it would, the rows are at
fault: the batch is bisected so that every row that can be written is written, and only the
rows that fail alone are set aside (quarantined). If nothing at all can be written and the
database never named a value, the database is at fault after all (a read-only server, a
missing table): the rows are kept for later rather than quarantined.
"""

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelloop.service.metrics import ServiceMetrics
from modelloop.service.spool import Spool
from modelloop.store.errors import RowsRejected
from modelloop.store.log import Entry, LogRow, PredictionLog
from modelloop.store.log.chunk import log_rows

log = logging.getLogger("modelloop.service.log")

FILE_RETRY_CAP = 60.0  # longest wait before a spool file that failed is tried again
# Rows failing alone with errors that name no value, with nothing written yet, after which the
# database is taken to refuse everything (each costs a write and a probe).
SUSPECTS = 8


def describe(e: BaseException) -> str:
    """An error's first line (server-side logs only: it may hold hosts, users, values)."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first[:300]


class DatabaseAway(Exception):
    """The database does not take rows now; keep them and try again later. `answers`: it
    answered a probe (it refuses writes) rather than not answering at all."""

    def __init__(self, error: str, answers: bool) -> None:
        super().__init__(error)
        self.error = error
        self.answers = answers


@dataclass
class Salvaged:
    inserted: int  # rows new to the database
    bad: list[LogRow] = field(default_factory=list)  # rows that failed alone
    error: str = ""  # the first error about a bad row


def write_salvaging(sink: PredictionLog, rows: Sequence[Entry], fresh: bool = False) -> Salvaged:
    """Write rows (and chunks); when some are bad, write all the others (a chunk's as its
    rows). Raises DatabaseAway. `fresh`: never sent before (PredictionLog.write); after a
    refusal (rolled back) still so, after any other error perhaps not (a commit whose answer
    was lost)."""
    try:
        return Salvaged(sink.write(rows, fresh=fresh))
    except RowsRejected as e:
        first: Exception = e
    except Exception as e:
        if not sink.writable():
            raise DatabaseAway(describe(e), answers=False) from e
        first = e
        fresh = False
    return _bisect(sink, log_rows(rows), first, fresh)


def _bisect(sink: PredictionLog, rows: Sequence[LogRow], first: Exception, fresh: bool) -> Salvaged:
    result = Salvaged(0)
    suspects: list[LogRow] = []
    suspect_error = ""
    named = isinstance(first, RowsRejected)  # the database named a value it refuses
    written = False
    # (rows, the error they failed with, or None: not tried yet); a stack, first rows first
    parts: list[tuple[Sequence[LogRow], Exception | None]] = [(rows, first)]
    while parts:
        part, error = parts.pop()
        if error is None:
            try:
                result.inserted += sink.write(part, fresh=fresh)
                written = True
                continue
            except RowsRejected as e:
                error, named = e, True
            except Exception as e:
                if not sink.writable():
                    raise DatabaseAway(describe(e), answers=False) from e
                error, fresh = e, False
        if len(part) > 1:
            mid = len(part) // 2
            parts += [(part[mid:], None), (part[:mid], None)]
        elif isinstance(error, RowsRejected):
            result.bad.append(part[0])
            result.error = result.error or describe(error)
        else:
            suspects.append(part[0])
            suspect_error = suspect_error or describe(error)
            if not written and not named and len(suspects) >= SUSPECTS:
                raise DatabaseAway(suspect_error, answers=True) from error
    if suspects and not written and not named:
        raise DatabaseAway(suspect_error, answers=True) from first
    result.bad += suspects
    result.error = result.error or suspect_error
    return result


@dataclass
class Replayed:
    rows: int  # log rows read from the file
    inserted: int  # of them, rows new to the database
    refused: int  # of them, rows the database refused, set aside
    unreadable: int  # lines that are not log rows, set aside
    kept: list[Path]  # the quarantine files written
    error: str  # the first reason for setting something aside


def replay_file(spool: Spool, sink: PredictionLog, path: Path) -> Replayed | None:
    """Write one spool file back and delete it; refused rows and unreadable lines go to the
    quarantine. None if another process took the file first. On DatabaseAway (the database
    does not take rows) or OSError (the file cannot be read, or its bad rows not set aside),
    the file stays in the spool; rows already written are skipped when it is replayed again."""
    claimed = spool.claim(path)
    if claimed is None:
        return None
    try:
        rows, unreadable = spool.read(claimed)
        salvaged = write_salvaging(sink, rows) if rows else Salvaged(0)
        kept = spool.quarantine(path.name, salvaged.bad, unreadable)
    except BaseException:
        with contextlib.suppress(OSError):  # else it is claimed until CLAIM_TIMEOUT
            spool.release(claimed, path)
        raise
    claimed.unlink()
    error = salvaged.error or (f"{len(unreadable)} lines are not log rows" if unreadable else "")
    return Replayed(len(rows), salvaged.inserted, len(salvaged.bad), len(unreadable), kept, error)


class Replayer:
    """Replays the spool, oldest file first. A file that fails while the database answers is
    retried later (with a doubling delay) and never holds up the files behind it."""

    def __init__(
        self, spool: Spool, sink: PredictionLog, metrics: ServiceMetrics, retry_seconds: float
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.metrics = metrics
        self.retry_seconds = retry_seconds
        self._retry: dict[str, tuple[float, float]] = {}  # file name: (when, delay)

    def run(self, until: float) -> bool:
        """Replay files until the monotonic time `until`; True if the database took any.
        Raises DatabaseAway when it does not answer (the files behind would fail alike)."""
        try:
            files = self.spool.files()
        except OSError as e:
            self.metrics.log_writer_errors.labels("replay").inc()
            log.warning("prediction log: cannot list the spool %s: %s", self.spool.directory, e)
            return False
        names = {p.name for p in files}
        self._retry = {k: v for k, v in self._retry.items() if k in names}
        now = time.monotonic()
        read = inserted = 0
        try:
            for path in files:
                if time.monotonic() > until:
                    break  # the rest on a later round: the queue comes first
                if now < self._retry.get(path.name, (0.0, 0.0))[0]:
                    continue
                try:
                    done = replay_file(self.spool, self.sink, path)
                except DatabaseAway as e:
                    if not e.answers:
                        raise
                    self._failed(path.name, e.error)
                    continue
                except Exception as e:
                    self._failed(path.name, describe(e))
                    continue
                self._retry.pop(path.name, None)
                if done is not None:
                    read += done.rows
                    inserted += done.inserted
                    self._report(path.name, done)
        finally:
            if read:
                self.metrics.log_rows_replayed.inc(read)
                self.metrics.log_rows_written.inc(inserted)
                log.info("replayed %d spooled log rows (%d new to the database)", read, inserted)
        return read > 0

    def _report(self, name: str, done: Replayed) -> None:
        if not (done.refused or done.unreadable):
            return
        self.metrics.log_rows_quarantined.inc(done.refused + done.unreadable)
        log.warning(
            "prediction log: spool file %s: %d rows written, %d refused rows and %d unreadable "
            "lines set aside in %s (first error: %s)",
            name,
            done.rows - done.refused,
            done.refused,
            done.unreadable,
            ", ".join(str(p) for p in done.kept),
            done.error,
        )

    def _failed(self, name: str, error: str) -> None:
        self.metrics.log_writer_errors.labels("replay").inc()
        _, delay = self._retry.get(name, (0.0, 0.0))
        if not delay:
            log.warning(
                "prediction log: spool file %s not replayed (%s); it stays in the spool and is "
                "retried, the files behind it go on",
                name,
                error,
            )
        delay = min(FILE_RETRY_CAP, max(self.retry_seconds, delay * 2))
        self._retry[name] = (time.monotonic() + delay, delay)
