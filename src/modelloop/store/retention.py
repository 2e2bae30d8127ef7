"""Retention: the prediction log, its feedback and the drift reports are bounded by age and the
log also by rows. Whole records go, oldest first, in small transactions, so writers are never
held up for long; SQLite reuses the freed pages, so the file stops growing once the bound is
reached."""

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select

from modelloop.store.database import Database
from modelloop.store.schema import drift_reports, feedback, prediction_batches, prediction_ids

BATCH_RECORDS = 50  # records deleted per transaction (~12,500 rows of the service's batches)


@dataclass(frozen=True)
class Pruned:
    predictions: int = 0  # rows
    feedback: int = 0
    reports: int = 0

    def __bool__(self) -> bool:
        return bool(self.predictions or self.feedback or self.reports)


class Retention:
    """`max_age_seconds` <= 0 and `max_rows` <= 0 each mean "no bound". The row bound holds to
    the record: the oldest records go while the log holds more than `max_rows` rows, so it
    keeps at most `max_rows` (and fewer by less than its oldest kept record's rows)."""

    def __init__(
        self, db: Database, max_age_seconds: float, max_rows: int, batch: int = BATCH_RECORDS
    ) -> None:
        self.db = db
        self.max_age_seconds = max_age_seconds
        self.max_rows = max_rows
        self.batch = batch

    @property
    def bounded(self) -> bool:
        return self.max_age_seconds > 0 or self.max_rows > 0

    def prune(self, now: float | None = None, stop: threading.Event | None = None) -> Pruned:
        """Delete what the bounds condemn; with `stop` set, end after the current batch."""
        if not self.bounded:
            return Pruned()
        now = time.time() if now is None else now
        age_cutoff = now - self.max_age_seconds if self.max_age_seconds > 0 else None
        b = prediction_batches.c
        with self.db.engine.connect() as conn:
            total = int(conn.execute(select(func.coalesce(func.sum(b.rows), 0))).scalar_one())
        n_predictions = n_feedback = 0
        while stop is None or not stop.is_set():
            with self.db.engine.begin() as conn:
                chunk = conn.execute(
                    select(b.seq, b.ts_max, b.rows, b.model, b.token, b.first_row, b.last_row)
                    .order_by(b.seq)
                    .limit(self.batch)
                ).all()
                # the oldest records, in log order, as long as one bound condemns them: a
                # record logged late with older times is kept until its turn comes
                doomed = []
                for record in chunk:
                    over = self.max_rows > 0 and total > self.max_rows
                    old = age_cutoff is not None and record.ts_max < age_cutoff
                    if not (over or old):
                        break
                    doomed.append(record)
                    total -= record.rows
                if not doomed:
                    break
                n_feedback += _delete_records(conn, doomed)
                n_predictions += sum(r.rows for r in doomed)
            if len(doomed) < len(chunk) or len(chunk) < self.batch:
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


def _delete_records(
    conn: Connection, doomed: Sequence[Row[Any, Any, Any, Any, Any, Any, Any]]
) -> int:
    """Delete records, their caller ids and the feedback of their rows; the feedback count.
    Each statement is one SQL text whatever the number of records (no IN lists)."""
    b, p, f = prediction_batches.c, prediction_ids.c, feedback.c
    n_feedback = 0
    for r in doomed:
        n_feedback += int(
            conn.execute(
                delete(feedback).where(
                    f.model == r.model,
                    f.token == r.token,
                    f.row_n >= r.first_row,
                    f.row_n <= r.last_row,
                )
            ).rowcount
        )
        conn.execute(
            delete(prediction_ids).where(
                p.token == r.token, p.row_n >= r.first_row, p.row_n <= r.last_row
            )
        )
    conn.execute(delete(prediction_batches).where(b.seq <= doomed[-1].seq))
    return n_feedback
