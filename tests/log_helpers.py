"""Reading the prediction log back in tests: every logged prediction, in log order."""

import math
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from modelloop.store.database import Database
from modelloop.store.log import PredictionLog
from modelloop.store.schema import feedback, prediction_batches, prediction_ids


def logged(db: Database, model: str) -> list[dict[str, Any]]:
    """`model`'s logged predictions, whole (PredictionLog.rows_between), in log order."""
    log = PredictionLog(db)
    return [r for t in log.rows_between(model, -math.inf, math.inf) for r in t.to_pylist()]


def logged_ids(db: Database, model: str | None = None) -> list[str]:
    """The ids of `model`'s logged predictions (of every model, model by model, in the order
    each first logged), in log order."""
    if model is not None:
        return [r["id"] for r in logged(db, model)]
    c = prediction_batches.c
    q = select(c.model).group_by(c.model).order_by(func.min(c.seq))
    with db.engine.connect() as conn:
        models = list(conn.execute(q).scalars())
    return [pid for m in models for pid in logged_ids(db, m)]


def logged_rows(db: Database, model: str) -> list[dict[str, Any]]:
    """`model`'s logged predictions as the service wrote them: id, ts, model, version,
    features, output, latency_ms."""
    return [
        {
            "id": r["id"],
            "ts": r["ts"],
            "model": model,
            "version": r["version"],
            "features": orjson.loads(r["features"]),
            "output": orjson.loads(r["output"]),
            "latency_ms": r["latency_ms"],
        }
        for r in logged(db, model)
    ]


def empty_log(conn: Connection) -> None:
    """Delete every logged prediction and every label."""
    for table in (feedback, prediction_ids, prediction_batches):
        conn.execute(table.delete())
