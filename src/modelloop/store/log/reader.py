"""Reading the log: whole records for the monitor (as Batch), the latest features for the
trainer, whole predictions with their labels for an export."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from numpy.typing import NDArray
from sqlalchemy import Engine, select

from modelloop.store.log import encoding, ids
from modelloop.store.log.batch import Batch, FloatArray, ObjectArray
from modelloop.store.schema import feedback, prediction_batches

FETCH = 64  # records fetched at a time


def _numbers(column: pa.Array, field: pa.Field) -> FloatArray | ObjectArray:
    """A feature column for the monitor: float64 (NaN for None) when every value is a number."""
    kind = field.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    if encoding.is_json(field):
        return _objects([orjson.loads(v) for v in column.to_pylist()])
    return _as_objects(column)


def _as_objects(column: pa.Array) -> ObjectArray:
    """A column's values as an object array; a dictionary column by its codes (its own
    conversion costs ~1.5 us a value)."""
    if pa.types.is_dictionary(column.type) and not column.null_count:
        words = np.empty(len(column.dictionary), dtype=object)
        words[:] = column.dictionary.to_pylist()
        return np.asarray(words[column.indices.to_numpy()], dtype=object)
    out = np.empty(len(column), dtype=object)
    out[:] = column.to_pylist()
    return out


def _objects(values: list[Any]) -> FloatArray | ObjectArray:
    if all(v is None or type(v) in (int, float) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def to_batch(seq: int, model: str, version: int, data: bytes) -> Batch:
    rb = encoding.decode(data)
    schema = rb.schema
    names = schema.names

    def col(name: str) -> pa.Array:
        return rb.column(schema.get_field_index(name))

    features: dict[str, FloatArray | ObjectArray] = {}
    if "features" in names:
        rows = [orjson.loads(v) for v in col("features").to_pylist()]
        keys = dict.fromkeys(k for r in rows for k in r)
        features = {k: _objects([r.get(k) for r in rows]) for k in keys}
    else:
        for i, name in enumerate(names):
            if name.startswith(encoding.FEATURE):
                features[name[len(encoding.FEATURE) :]] = _numbers(rb.column(i), schema.field(i))
    labels: ObjectArray | None = None
    probabilities: dict[str, FloatArray] = {}
    values: FloatArray | None = None
    if "value" in names:
        values = col("value").to_numpy().astype(np.float64)
    elif "label" in names:
        labels = _as_objects(col("label"))
        for i, name in enumerate(names):
            if name.startswith(encoding.PROBABILITY):
                key = name[len(encoding.PROBABILITY) :]
                probabilities[key] = rb.column(i).to_numpy().astype(np.float64)
    else:
        labels, probabilities, values = _odd_outputs(encoding.column_values(rb, "output"))
    return Batch(
        seq=seq,
        model=model,
        version=version,
        ts=col("ts").to_numpy(),
        latency_ms=col("latency_ms").to_numpy().astype(np.float64),
        features=features,
        labels=labels,
        probabilities=probabilities,
        values=values,
    )


def _odd_outputs(
    outs: list[Any],
) -> tuple[ObjectArray | None, dict[str, FloatArray], FloatArray | None]:
    """Outputs of no known shape, as far as they go: labels, probabilities or values."""
    dicts = [o if type(o) is dict else {} for o in outs]
    if any("value" in o for o in dicts):
        got = [o.get("value") for o in dicts]
        return None, {}, np.array([v if type(v) in (int, float) else np.nan for v in got])
    labels = np.empty(len(outs), dtype=object)
    labels[:] = [o.get("label") for o in dicts]
    probs: list[dict[str, Any]] = [
        p if type(p := o.get("probabilities")) is dict else {} for o in dicts
    ]
    keys = dict.fromkeys(k for p in probs for k in p)
    return (
        labels,
        {k: np.array([p.get(k, np.nan) for p in probs], dtype=np.float64) for k in keys},
        None,
    )


def records_since(
    engine: Engine, model: str, after_seq: int, limit_rows: int, before_ts: float
) -> list[tuple[int, int, bytes]]:
    """(seq, version, data) of the records of `model` after `after_seq`, in seq order, whole,
    until their rows reach `limit_rows` (at least one). The read stops at the first record
    holding a row as new as `before_ts`: the watermark never passes a record unread."""
    c = prediction_batches.c
    q = (
        select(c.seq, c.version, c.rows, c.ts_max, c.data)
        .where(c.model == model, c.seq > after_seq)
        .order_by(c.seq)
        .limit(max(1, limit_rows))  # a record holds one row at least
    )
    out: list[tuple[int, int, bytes]] = []
    rows = 0
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # walk the (model, seq) index: never sort a backlog on disk
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
        result = conn.execute(q)
        try:
            while chunk := result.fetchmany(FETCH):
                for seq, version, n, ts_max, data in chunk:
                    if ts_max >= before_ts:
                        return out
                    out.append((int(seq), int(version), data))
                    rows += n
                    if rows >= limit_rows:
                        return out
        finally:
            result.close()
    return out


def batches_since(
    engine: Engine, model: str, after_seq: int, limit_rows: int, before_ts: float
) -> list[Batch]:
    """records_since, decoded."""
    return [
        to_batch(seq, model, version, data)
        for seq, version, data in records_since(engine, model, after_seq, limit_rows, before_ts)
    ]


def latest_features(engine: Engine, model: str, limit: int) -> list[tuple[float, dict[str, Any]]]:
    """The newest `limit` logged predictions of `model`: (ts, features), newest first."""
    c = prediction_batches.c
    q = select(c.rows, c.data).where(c.model == model).order_by(c.seq.desc())
    out: list[tuple[float, dict[str, Any]]] = []
    with engine.connect() as conn:
        result = conn.execute(q)
        try:
            for _, data in result:
                rb = encoding.decode(data)
                feats, _ = encoding.rows_of(rb)
                ts = encoding.column_values(rb, "ts")
                out += reversed(list(zip(ts, feats, strict=True)))
                if len(out) >= limit:
                    break
        finally:
            result.close()
    return out[:limit]


def record_ids(batch: pa.RecordBatch, token: str) -> list[str]:
    """Each row's id as its caller got it."""
    if "id" in batch.schema.names:
        return list(encoding.column_values(batch, "id"))
    numbers = batch.column(0).to_pylist()
    firsts = encoding.column_values(batch, "first")
    tags = encoding.column_values(batch, "tag")
    return [
        ids.request_id(token, first, ids.tag_text(tag)) + f":{n - first}"
        for n, first, tag in zip(numbers, firsts, tags, strict=True)
    ]


def records_between(
    engine: Engine, model: str, since: float, until: float
) -> Iterator[
    tuple[pa.RecordBatch, NDArray[np.int64], list[str], int, list[tuple[Any, float] | None]]
]:
    """Each record of `model` with rows logged in [since, until): its batch, the places of
    those rows, their ids, the record's version and each of those rows' (label, label time) or
    None."""
    c, f = prediction_batches.c, feedback.c
    q = (
        select(c.version, c.token, c.first_row, c.last_row, c.data)
        .where(c.model == model, c.ts_max >= since, c.ts_min < until)
        .order_by(c.seq)
    )
    with engine.connect() as conn:
        for version, token, lo, hi, data in conn.execute(q).all():
            rb = encoding.decode(data)
            ts = rb.column(rb.schema.get_field_index("ts")).to_numpy()
            keep = np.flatnonzero((ts >= since) & (ts < until))
            if not len(keep):
                continue
            labels = {
                n: (label, when)
                for n, label, when in conn.execute(
                    select(f.row_n, f.label, f.ts).where(
                        f.model == model, f.token == token, f.row_n.between(lo, hi)
                    )
                ).all()
            }
            numbers = rb.column(0).to_pylist()
            pids = record_ids(rb, token)
            picked = keep.tolist()
            yield (
                rb,
                keep,
                [pids[i] for i in picked],
                version,
                [labels.get(numbers[i]) for i in picked],
            )


def rows_between(engine: Engine, model: str, since: float, until: float) -> Iterator[pa.Table]:
    """Whole predictions of `model` logged in [since, until), one table per record: id, ts,
    version, features and output (JSON text), latency_ms, label (JSON text, null if none)."""
    dumps = orjson.dumps
    for rb, keep, pids, version, labels in records_between(engine, model, since, until):
        feats, outs = encoding.rows_of(rb, keep)
        yield pa.table(
            {
                "id": pids,
                "ts": rb.column(rb.schema.get_field_index("ts")).to_numpy()[keep],
                "version": [version] * len(pids),
                "features": [dumps(v).decode() for v in feats],
                "output": [dumps(v).decode() for v in outs],
                "latency_ms": encoding.column_values(rb, "latency_ms", keep),
                "label": [None if x is None else dumps(x[0]).decode() for x in labels],
            }
        )
