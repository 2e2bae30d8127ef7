"""The log as one flat table per record, for `modelloop log export`: one row per prediction,
one column per feature, readable by pandas, DuckDB and Polars without decoding JSON.

Columns: `id` (as its caller got it), `time` (timestamp, UTC), `version`, each feature under its
own name, `prediction` (the label, or the value for regression), `probability_<class>` per
class, `latency_ms`, `label` (the feedback label, null if none came) and `label_time`. A
feature whose name is one of those columns is `feature_<name>`; values that were logged as
JSON (mixed types) are JSON text.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
from sqlalchemy import Engine

from modelloop.store.log import encoding
from modelloop.store.log.reader import records_between

FIXED = ("id", "time", "version", "prediction", "latency_ms", "label", "label_time")
PROBABILITY_PREFIX = "probability_"


def _plain(column: pa.Array, field: pa.Field) -> pa.Array:
    """A column as export readers like it: dictionaries as strings, JSON as text."""
    if encoding.is_json(field):
        return pa.array(
            [None if v is None else v.decode() for v in column.to_pylist()], pa.string()
        )
    if pa.types.is_dictionary(field.type):
        return column.cast(pa.string())
    if pa.types.is_float32(field.type):
        return column.cast(pa.float64())
    return column


def _values(values: list[Any]) -> pa.Array:
    """Python values as one Arrow column; values of mixed kinds as JSON text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [None if v is None else orjson.dumps(v).decode() for v in values], pa.string()
        )


def flat(
    batch: pa.RecordBatch,
    keep: npt.NDArray[np.int64],
    pids: Sequence[str],
    version: int,
    labels: Sequence[tuple[Any, float] | None],
) -> pa.Table:
    """The rows at `keep` of a record's batch; `pids` and `labels` (label, time) per kept row."""
    taken = batch.take(pa.array(keep))
    ts = taken.column(taken.schema.get_field_index("ts")).to_numpy()
    cols: dict[str, pa.Array] = {
        "id": pa.array(list(pids), pa.string()),
        "time": pa.array((ts * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
        "version": pa.array(np.full(len(keep), version, dtype=np.int64)),
    }
    outputs: dict[str, pa.Array] = {}
    for index, field in enumerate(taken.schema):
        name, column = field.name, taken.column(index)
        if name.startswith(encoding.FEATURE):
            feature = name[len(encoding.FEATURE) :]
            if feature in FIXED or feature.startswith(PROBABILITY_PREFIX):
                feature = "feature_" + feature
            cols[feature] = _plain(column, field)
        elif name in ("label", "value"):
            outputs["prediction"] = _plain(column, field)
        elif name.startswith(encoding.PROBABILITY):
            outputs[PROBABILITY_PREFIX + name[len(encoding.PROBABILITY) :]] = _plain(column, field)
        elif name in ("features", "output"):  # rows of another shape: their JSON as logged
            cols[name + "_json"] = _plain(column, field)
    cols.update(outputs)
    cols["latency_ms"] = _plain(
        taken.column(taken.schema.get_field_index("latency_ms")),
        taken.schema.field("latency_ms"),
    )
    cols["label"] = _values([None if x is None else x[0] for x in labels])
    cols["label_time"] = pa.array(
        [None if x is None else int(x[1] * 1e6) for x in labels], pa.timestamp("us", tz="UTC")
    )
    return pa.table(cols)


def export_tables(engine: Engine, model: str, since: float, until: float) -> Iterator[pa.Table]:
    """`model`'s predictions logged in [since, until) with their labels, one table a record."""
    for rb, keep, pids, version, labels in records_between(engine, model, since, until):
        yield flat(rb, keep, pids, version, labels)
