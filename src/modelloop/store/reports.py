"""What the monitor keeps: drift reports per window, its own state per model, the report page."""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from modelloop.store.database import Database
from modelloop.store.schema import drift_reports, monitor_state, report_pages

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
