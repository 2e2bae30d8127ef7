"""The prediction log and the feedback that labels it."""

import time
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

import orjson
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from modelloop.store.database import Database
from modelloop.store.schema import feedback, predictions


class LogRow(TypedDict):
    id: str
    ts: float
    model: str
    version: int
    features: dict[str, Any]
    output: dict[str, Any]
    latency_ms: float


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[Any]) -> int:
    """Insert rows, skipping those whose unique key is already there; return rows inserted."""
    if not rows:
        return 0
    stmt: Insert
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    # Count the rows RETURNING gives back: an executemany's rowcount is -1 with psycopg.
    stmt = stmt.returning(*table.primary_key.columns)
    return len(conn.execute(stmt, list(rows)).all())


LOG_COLUMNS = ("id", "ts", "model", "version", "features", "output", "latency_ms")


class PredictionLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        dialect = db.engine.dialect
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        compiled = (
            insert(predictions)
            .on_conflict_do_nothing()
            .compile(dialect=dialect, column_keys=list(LOG_COLUMNS))
        )
        # The log is the one table written at request rate: its insert is compiled once and
        # run as the driver's own executemany, with the JSON encoded here by orjson.
        self._insert_sql = str(compiled)
        self._order = list(compiled.positiontup or []) if compiled.positional else None

    def write(self, rows: Sequence[LogRow]) -> int:
        """Commit a batch; rows whose id is already logged are skipped (replays are safe).
        Returns the rows inserted."""
        if not rows:
            return 0
        dumps = orjson.dumps
        params: list[Any] = [
            {
                "id": r["id"],
                "ts": r["ts"],
                "model": r["model"],
                "version": r["version"],
                "features": dumps(r["features"]).decode(),
                "output": dumps(r["output"]).decode(),
                "latency_ms": r["latency_ms"],
            }
            for r in rows
        ]
        if self._order is not None:
            order = self._order
            params = [tuple(p[k] for k in order) for p in params]
        with self.db.engine.begin() as conn:
            result = conn.exec_driver_sql(self._insert_sql, params)
            return int(result.rowcount)

    def count(self, model: str | None = None) -> int:
        q = select(func.count()).select_from(predictions)
        if model is not None:
            q = q.where(predictions.c.model == model)
        with self.db.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def read_since(self, model: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        q = (
            select(predictions)
            .where(predictions.c.model == model, predictions.c.seq > after_seq)
            .order_by(predictions.c.seq)
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def add_feedback(self, items: Iterable[tuple[str, Any]]) -> tuple[int, list[str]]:
        """Store labels for logged predictions; return (matched, ids not in the log)."""
        pairs = list(items)
        ids = list(dict.fromkeys(pid for pid, _ in pairs))
        known: set[str] = set()
        now = time.time()
        with self.db.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                known.update(
                    conn.execute(
                        select(predictions.c.id).where(predictions.c.id.in_(chunk))
                    ).scalars()
                )
            rows = [
                {"prediction_id": pid, "label": label, "ts": now}
                for pid, label in pairs
                if pid in known
            ]
            if rows:
                conn.execute(feedback.insert(), rows)
        unknown = [pid for pid in ids if pid not in known]
        return len(rows), unknown

    def labelled(
        self, model: str, since_ts: float = 0.0, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Logged predictions of `model` that have feedback, newest label per prediction."""
        latest = (
            select(feedback.c.prediction_id, func.max(feedback.c.seq).label("seq"))
            .group_by(feedback.c.prediction_id)
            .subquery()
        )
        q = (
            select(
                predictions.c.id,
                predictions.c.ts,
                predictions.c.version,
                predictions.c.features,
                predictions.c.output,
                feedback.c.label,
                feedback.c.ts.label("label_ts"),
            )
            .join(latest, latest.c.prediction_id == predictions.c.id)
            .join(feedback, feedback.c.seq == latest.c.seq)
            .where(predictions.c.model == model, predictions.c.ts >= since_ts)
            .order_by(predictions.c.ts.desc())
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
