"""Retention: the prediction log, its feedback and the drift reports are bounded by age and the
log also by rows. Deletes go oldest first in small transactions, so writers are never held up
for long; SQLite reuses the freed pages, so the file stops growing once the bound is reached."""

import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete, select

from modelloop.store.database import Database
from modelloop.store.schema import drift_reports, feedback, predictions

BATCH_ROWS = 5_000


@dataclass(frozen=True)
class Pruned:
    predictions: int = 0
    feedback: int = 0
    reports: int = 0

    def __bool__(self) -> bool:
        return bool(self.predictions or self.feedback or self.reports)


class Retention:
    """`max_age_seconds` <= 0 and `max_rows` <= 0 each mean "no bound"."""

    def __init__(
        self, db: Database, max_age_seconds: float, max_rows: int, batch: int = BATCH_ROWS
    ) -> None:
        self.db = db
        self.max_age_seconds = max_age_seconds
        self.max_rows = max_rows
        self.batch = batch

    def _row_cutoff(self) -> int | None:
        """The newest seq to delete so that at most `max_rows` rows remain: the seq of the
        (max_rows + 1)-th newest row. Reading it walks `max_rows` index entries, whatever the
        table's size."""
        if self.max_rows <= 0:
            return None
        q = (
            select(predictions.c.seq)
            .order_by(predictions.c.seq.desc())
            .limit(1)
            .offset(self.max_rows)
        )
        with self.db.engine.connect() as conn:
            seq = conn.execute(q).scalar()
        return None if seq is None else int(seq)

    @property
    def bounded(self) -> bool:
        return self.max_age_seconds > 0 or self.max_rows > 0

    def prune(self, now: float | None = None, stop: threading.Event | None = None) -> Pruned:
        """Delete what the bounds condemn; with `stop` set, end after the current batch."""
        if self.max_age_seconds <= 0 and self.max_rows <= 0:
            return Pruned()
        now = time.time() if now is None else now
        age_cutoff = now - self.max_age_seconds if self.max_age_seconds > 0 else None
        seq_cutoff = self._row_cutoff()
        n_predictions = n_feedback = 0
        while stop is None or not stop.is_set():
            with self.db.engine.begin() as conn:
                chunk = conn.execute(
                    select(predictions.c.seq, predictions.c.ts)
                    .order_by(predictions.c.seq)
                    .limit(self.batch)
                ).all()
                # the oldest rows, in log order, as long as one bound condemns them: a row
                # logged late with an older time is kept until its turn comes
                doomed = 0
                for seq, ts in chunk:
                    if (seq_cutoff is not None and seq <= seq_cutoff) or (
                        age_cutoff is not None and ts < age_cutoff
                    ):
                        doomed += 1
                    else:
                        break
                if not doomed:
                    break
                # The doomed rows are all rows up to the last one's seq, and both deletes name
                # them by that seq rather than by a list of their ids: an IN list of up to 5,000
                # ids is a new SQL text for each length, and SQLite's driver keeps 128 prepared
                # statements per connection, ~1 MB each at 5,000 ids (sqlite3_db_status: the
                # monitor grew by ~1 MB per retention pass, ~2 MB/min in the soak). The subquery
                # walks the log's primary key and the index on feedback.prediction_id.
                last = chunk[doomed - 1][0]
                doomed_ids = select(predictions.c.id).where(predictions.c.seq <= last)
                n_feedback += int(
                    conn.execute(
                        delete(feedback).where(feedback.c.prediction_id.in_(doomed_ids))
                    ).rowcount
                )
                n_predictions += int(
                    conn.execute(delete(predictions).where(predictions.c.seq <= last)).rowcount
                )
            if doomed < len(chunk) or len(chunk) < self.batch:
                break
        n_reports = 0
        if age_cutoff is not None:
            with self.db.engine.begin() as conn:
                n_reports = int(
                    conn.execute(
                        delete(drift_reports).where(drift_reports.c.ts < age_cutoff)
                    ).rowcount
                )
        return Pruned(n_predictions, n_feedback, n_reports)
