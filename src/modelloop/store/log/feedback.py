"""Feedback: labels for logged predictions, and the labelled predictions of a model."""

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import Engine, select

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
    then the records that hold its rows (found from their row spans, read by seq), decoded
    for those rows only."""
    f, b = feedback.c, prediction_batches.c
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        labels: dict[str, dict[int, tuple[str, Any, float]]] = defaultdict(dict)
        q = select(f.token, f.row_n, f.prediction_id, f.label, f.ts).where(f.model == model)
        for token, row, pid, label, ts in conn.execute(q):
            labels[token][row] = (pid, label, ts)
        wanted: list[int] = []
        for token, rows in labels.items():
            spans = conn.execute(
                select(b.seq, b.first_row, b.last_row)
                .where(b.model == model, b.token == token, b.ts_max >= since_ts)
                .order_by(b.first_row)
            ).all()
            wanted += _covering(spans, rows)
        tokens_of: dict[int, str] = {}
        sorted_rows = {
            t: np.sort(np.fromiter(rows, dtype=np.int64, count=len(rows)))
            for t, rows in labels.items()
        }
        for start in range(0, len(wanted), lookup.ID_LOOKUP):
            chunk = lookup.padded(wanted[start : start + lookup.ID_LOOKUP])
            q2 = select(b.seq, b.token, b.version, b.data).where(b.seq.in_(chunk))
            for seq, token, version, data in conn.execute(q2):
                if seq in tokens_of:
                    continue
                tokens_of[seq] = token
                out += _rows(labels[token], sorted_rows[token], version, data, since_ts)
    out.sort(key=lambda r: r["ts"], reverse=True)
    return out[:limit]


def _covering(spans: Sequence[Any], rows: dict[int, Any]) -> list[int]:
    """The seqs of the records (seq, first_row, last_row; by first_row) whose span holds one
    of `rows` at least."""
    if not spans:
        return []
    firsts = np.array([s[1] for s in spans], dtype=np.int64)
    lasts = np.array([s[2] for s in spans], dtype=np.int64)
    seqs = np.array([s[0] for s in spans], dtype=np.int64)
    asked = np.sort(np.fromiter(rows, dtype=np.int64, count=len(rows)))
    # the first asked row at or after each span's start: the span holds a row if it is in it
    # (spans may overlap: requests of a token written out of order)
    at = np.searchsorted(asked, firsts)
    inside = at < len(asked)
    hit = np.zeros(len(spans), dtype=bool)
    hit[inside] = asked[at[inside]] <= lasts[inside]
    return [int(s) for s in seqs[hit]]


def _rows(
    wanted: dict[int, tuple[str, Any, float]],
    wanted_rows: npt.NDArray[np.int64],
    version: int,
    data: bytes,
    since_ts: float,
) -> list[dict[str, Any]]:
    """The rows of a record that `wanted` (and `wanted_rows`, its row numbers sorted) labels."""
    batch = encoding.decode(data)
    numbers = batch.column(0).to_numpy()
    ts = batch.column(batch.schema.get_field_index("ts")).to_numpy()
    at = np.minimum(np.searchsorted(wanted_rows, numbers), len(wanted_rows) - 1)
    mask = (wanted_rows[at] == numbers) & (ts >= since_ts)
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
