"""What the monitor keeps: drift reports per window, its own state per model, the report page."""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Text, cast, delete, insert, select, update

from modelloop.store.database import Database
from modelloop.store.schema import drift_reports, monitor_state, predictions, report_pages

# a closed window's report: (version, window_start, window_end, rows, state, verdict, report)
ReportRow = tuple[int, float, float, int, str, str, dict[str, Any]]


@dataclass(frozen=True)
class MonitorState:
    model: str
    watermark: int
    state: str
    updated_at: float
    data: dict[str, Any]


class DriftReports:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        model: str,
        version: int,
        window_start: float,
        window_end: float,
        rows: int,
        state: str,
        verdict: str,
        report: dict[str, Any],
    ) -> int:
        with self.db.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(drift_reports)
                    .values(
                        model=model,
                        version=version,
                        ts=time.time(),
                        window_start=window_start,
                        window_end=window_end,
                        rows=rows,
                        state=state,
                        verdict=verdict,
                        report=report,
                    )
                    .returning(drift_reports.c.id)
                ).scalar_one()
            )

    def latest(self, model: str) -> dict[str, Any] | None:
        found = self.list(model, limit=1)
        return found[0] if found else None

    def list(self, model: str, limit: int = 100, since: float = 0.0) -> list[dict[str, Any]]:
        """Newest first."""
        q = (
            select(drift_reports)
            .where(drift_reports.c.model == model, drift_reports.c.ts >= since)
            .order_by(drift_reports.c.id.desc())
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


class MonitorStates:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, model: str) -> MonitorState | None:
        with self.db.engine.connect() as conn:
            row = (
                conn.execute(select(monitor_state).where(monitor_state.c.model == model))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return MonitorState(
            row["model"], int(row["watermark"]), row["state"], row["updated_at"], row["data"] or {}
        )

    def all(self) -> list[MonitorState]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(monitor_state)).mappings().all()
        return [
            MonitorState(
                r["model"], int(r["watermark"]), r["state"], r["updated_at"], r["data"] or {}
            )
            for r in rows
        ]

    def save(
        self,
        model: str,
        watermark: int,
        state: str,
        data: dict[str, Any],
        reports: list[ReportRow] | None = None,
    ) -> None:
        """Store the monitor's state and, in the same transaction, the reports of the windows
        it closed since the last save: a monitor killed at any point leaves both or neither,
        so on restart no window is judged twice and no row is counted twice."""
        values = {"watermark": watermark, "state": state, "updated_at": time.time(), "data": data}
        with self.db.engine.begin() as conn:
            if reports:
                _insert_reports(conn, model, reports)
            n = conn.execute(
                update(monitor_state).where(monitor_state.c.model == model).values(**values)
            ).rowcount
            if n == 0:
                conn.execute(insert(monitor_state).values(model=model, **values))


def _insert_reports(conn: Connection, model: str, rows: list[ReportRow]) -> None:
    now = time.time()
    conn.execute(
        insert(drift_reports),
        [
            {
                "model": model,
                "version": v,
                "ts": now,
                "window_start": a,
                "window_end": b,
                "rows": n,
                "state": st,
                "verdict": vd,
                "report": rep,
            }
            for v, a, b, n, st, vd, rep in rows
        ],
    )


class ReportPages:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, model: str, html: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(report_pages).where(report_pages.c.model == model))
            conn.execute(
                insert(report_pages).values(model=model, html=html, updated_at=time.time())
            )

    def get(self, model: str) -> str | None:
        with self.db.engine.connect() as conn:
            return conn.execute(
                select(report_pages.c.html).where(report_pages.c.model == model)
            ).scalar()


# The monitor's read of the log. Run through SQLAlchemy (errors, pooling) but fetched from the
# DBAPI cursor: building SQLAlchemy rows costs as much as the rest of the read (~0.6 of ~1.3 µs
# a row). Placeholders in each driver's style.
_SCAN_LOG = (
    "SELECT seq, ts, version, CAST(features AS TEXT), CAST(output AS TEXT) FROM predictions"
    " WHERE model = {model} AND seq > {after} AND ts < {before} ORDER BY seq LIMIT {limit}"
)
_SCAN_SQL = {
    "postgresql": _SCAN_LOG.format(
        model="%(model)s", after="%(after)s", before="%(before)s", limit="%(limit)s"
    ),
    "sqlite": _SCAN_LOG.format(model=":model", after=":after", before=":before", limit=":limit"),
}


def scan_log(
    db: Database, model: str, after_seq: int, limit: int, before_ts: float
) -> list[tuple[int, float, int, str, str]]:
    """Log rows of `model` after `after_seq` and older than `before_ts`, in order:
    (seq, ts, version, features JSON text, output JSON text). JSON stays text so the caller
    decodes it in bulk."""
    params = {"model": model, "after": after_seq, "before": before_ts, "limit": limit}
    with db.engine.connect() as conn:
        if db.backend == "postgresql":
            # Walk the (model, seq) index, never sort. Without statistics (a new or newly
            # filled table that autovacuum has not analysed yet) the planner guesses ~200 rows
            # match and sorts every row after the watermark, on disk: 0.7 s of server time per
            # 20k-row chunk of a 200k-row backlog, against 0.05 s.
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
        result = conn.exec_driver_sql(_SCAN_SQL[db.backend], params)
        try:
            return list(result.cursor.fetchall())
        finally:
            result.close()


def latest_log(db: Database, model: str, limit: int) -> list[tuple[float, str]]:
    """The newest `limit` log rows of `model`: (ts, features JSON text), newest first."""
    q = (
        select(predictions.c.ts, cast(predictions.c.features, Text))
        .where(predictions.c.model == model)
        .order_by(predictions.c.seq.desc())
        .limit(limit)
    )
    with db.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(q)]
