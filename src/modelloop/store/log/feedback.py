"""Feedback: labels for logged predictions, and the labelled predictions of a model."""

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Engine, exists, select

from modelloop.store.log import encoding, lookup
from modelloop.store.log.rows import LabelCheck
from modelloop.store.schema import feedback, prediction_batches


def add_feedback(
    engine: Engine, items: Iterable[tuple[str, Any]], check: LabelCheck | None = None
) -> tuple[int, list[str]]:
    pairs = list(items)
    with engine.connect() as conn:
        found = lookup.find(conn, (pid for pid, _ in pairs))
    latest: dict[str, Any] = {}
    matched = 0
    for index, (pid, label) in enumerate(pairs):
        where = found.get(pid)
        if where is None:
            continue
        matched += 1
        latest[pid] = label if check is None else check(index, pid, label, *where[:2])
    if latest:
        now = time.time()
        dumps = orjson.dumps
        rows = []
        for pid, label in latest.items():
            w = found[pid]
            rows.append((pid, dumps(label).decode(), now, w.model, w.token, w.row))
        _upsert(engine, rows)
    unknown = [pid for pid in dict.fromkeys(pid for pid, _ in pairs) if pid not in found]
    return matched, unknown


_UPSERT = (
    "INSERT INTO feedback (prediction_id, label, ts, model, token, row_n) "
    "VALUES ({p}, {label}, {p}, {p}, {p}, {p}) ON CONFLICT (prediction_id) DO UPDATE SET "
    "label = excluded.label, ts = excluded.ts, model = excluded.model, "
    "token = excluded.token, row_n = excluded.row_n"
)
_UPSERTS = {
    "postgresql": _UPSERT.format(p="%s", label="CAST(%s AS JSON)"),
    "sqlite": _UPSERT.format(p="?", label="?"),
}


def _upsert(engine: Engine, rows: list[tuple[str, str, float, str, str, int]]) -> None:
    """INSERT ... ON CONFLICT (prediction_id) DO UPDATE, on SQLite and PostgreSQL alike
    (`rows` hold each id once: PostgreSQL refuses to update a row twice in a statement).
    The driver's executemany on tuples: SQLAlchemy's own costs ~4 us a row in parameters."""
    with engine.begin() as conn:
        conn.exec_driver_sql(_UPSERTS[engine.dialect.name], rows)


def labelled(engine: Engine, model: str, since_ts: float, limit: int) -> list[dict[str, Any]]:
    """Logged predictions of `model` with their label, newest first: the model's feedback,
    then the records that hold its rows, decoded for those rows only."""
    f, b = feedback.c, prediction_batches.c
    with engine.connect() as conn:
        labels: dict[str, dict[int, tuple[str, Any, float]]] = defaultdict(dict)
        q = select(f.token, f.row_n, f.prediction_id, f.label, f.ts).where(f.model == model)
        for token, row, pid, label, ts in conn.execute(q):
            labels[token][row] = (pid, label, ts)
        if not labels:
            return []
        covered = exists().where(
            f.model == b.model,
            f.token == b.token,
            f.row_n >= b.first_row,
            f.row_n <= b.last_row,
        )
        records = select(b.token, b.version, b.data).where(
            b.model == model, b.ts_max >= since_ts, covered
        )
        out: list[dict[str, Any]] = []
        for token, version, data in conn.execute(records):
            out += _rows(labels.get(token, {}), version, data, since_ts)
    out.sort(key=lambda r: r["ts"], reverse=True)
    return out[:limit]


def _rows(
    wanted: dict[int, tuple[str, Any, float]], version: int, data: bytes, since_ts: float
) -> list[dict[str, Any]]:
    batch = encoding.decode(data)
    numbers = batch.column(0).to_numpy()
    ts = batch.column(batch.schema.get_field_index("ts")).to_numpy()
    mask = np.isin(numbers, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
    mask &= ts >= since_ts
    take = np.flatnonzero(mask)
    if not len(take):
        return []
    feats, outs = encoding.rows_of(batch, take)
    out = []
    for i, n, features, output in zip(
        take.tolist(), numbers[take].tolist(), feats, outs, strict=True
    ):
        pid, label, label_ts = wanted[n]
        out.append(
            {
                "id": pid,
                "ts": float(ts[i]),
                "version": version,
                "features": features,
                "output": output,
                "label": label,
                "label_ts": label_ts,
            }
        )
    return out
