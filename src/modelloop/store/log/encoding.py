"""A log record's bytes: one Arrow IPC stream holding one record batch.

Columns, in this order: `row` (uint32, each row's number under the record's token), then for
generated rows `first` (uint32, the first row of the row's request) and `tag` (its 8 bytes),
for caller rows `id`; `ts` (float64), `latency_ms` (float32); one `f:<name>` column per
feature; the outputs as `label` and one `p:<class key>` column per probability, or `value`.

A feature column is float64 when every value is a float or None, int64 when every value is an
int or None, a dictionary-encoded string when every value is a str or None; anything else is
JSON text (field metadata `json`), so every value comes back as it was logged. Rows whose
feature names differ make one JSON `features` column; outputs of another shape, one JSON
`output` column. Probabilities and values are float32 when every one of them is a float32's
value (the ONNX outputs are), else float64: either way the float64 read back equals the one
written.
"""

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

FEATURE = "f:"
PROBABILITY = "p:"
COMPRESSION: str | None = None  # bench/log_store_bench.py: zstd and lz4 cost more than they save

_JSON = {b"json": b"1"}
_INT64 = (-(1 << 63), 1 << 63)
_WRITE = pa.ipc.IpcWriteOptions(compression=COMPRESSION)
_NONE = type(None)


def _json_field(name: str, values: Sequence[Any]) -> tuple[pa.Field, pa.Array]:
    dumps = orjson.dumps
    return pa.field(name, pa.binary(), metadata=_JSON), pa.array(
        [dumps(v) for v in values], pa.binary()
    )


def column(name: str, values: list[Any]) -> tuple[pa.Field, pa.Array]:
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    if kinds <= {float}:
        return pa.field(name, pa.float64()), pa.array(values, pa.float64())
    if kinds == {int} and all(v is None or _INT64[0] <= v < _INT64[1] for v in values):
        return pa.field(name, pa.int64()), pa.array(values, pa.int64())
    if kinds == {str}:
        array = pa.array(values, pa.string()).dictionary_encode()
        return pa.field(name, array.type), array
    return _json_field(name, values)


def floats(name: str, values: Any) -> tuple[pa.Field, pa.Array]:
    """Floats (a list or an array) as float32 when that loses nothing, else float64."""
    wide = np.asarray(values, dtype=np.float64)
    narrow = wide.astype(np.float32)
    if np.array_equal(narrow.astype(np.float64), wide, equal_nan=True):
        return pa.field(name, pa.float32()), pa.array(narrow)
    return pa.field(name, pa.float64()), pa.array(wide)


def _same_keys(dicts: list[Any], keys: Any) -> bool:
    """Every one of `dicts` is a dict with exactly `keys` (in C: this runs per row)."""
    return set(map(type, dicts)) == {dict} and all(map(keys.__eq__, map(dict.keys, dicts)))


def _transposed(dicts: list[Any], keys: Any) -> list[list[Any]]:
    """Each key's values over `dicts` (which all have those keys), transposed in C."""
    names = list(keys)
    if len(names) == 1:
        return [list(map(operator.itemgetter(names[0]), dicts))]
    return [list(col) for col in zip(*map(operator.itemgetter(*names), dicts), strict=True)]


def _features(rows: Sequence[Any]) -> list[tuple[pa.Field, pa.Array]]:
    feats = list(map(operator.itemgetter("features"), rows))
    names = feats[0].keys()
    if not names or not _same_keys(feats, names):
        return [_json_field("features", feats)]
    return [
        column(FEATURE + k, values)
        for k, values in zip(names, _transposed(feats, names), strict=True)
    ]


def _outputs(rows: Sequence[Any]) -> list[tuple[pa.Field, pa.Array]]:
    outs = list(map(operator.itemgetter("output"), rows))
    first = outs[0]
    keys = first.keys()
    if keys == {"value"} and _same_keys(outs, keys):
        values = list(map(operator.itemgetter("value"), outs))
        if set(map(type, values)) == {float}:
            return [floats("value", values)]
    elif keys == {"label", "probabilities"} and _same_keys(outs, keys):
        labels = list(map(operator.itemgetter("label"), outs))
        probs = list(map(operator.itemgetter("probabilities"), outs))
        classes = probs[0].keys() if type(probs[0]) is dict else None
        kinds = set(map(type, labels))
        if classes and (kinds == {str} or kinds == {int}) and _same_keys(probs, classes):
            columns = [column("label", labels)]
            for k, values in zip(classes, _transposed(probs, classes), strict=True):
                if set(map(type, values)) != {float}:
                    return [_json_field("output", outs)]
                columns.append(floats(PROBABILITY + k, values))
            if not pa.types.is_binary(columns[0][0].type):
                return columns
    return [_json_field("output", outs)]


def encode(
    rows: Sequence[Any],
    numbers: Sequence[int],
    firsts: Sequence[int] | None = None,
    tags: Sequence[bytes] | None = None,
    ids: Sequence[str] | None = None,
) -> bytes:
    """One record of `rows` (log rows of one model version): generated rows with their
    `firsts` and `tags`, or caller rows with their `ids`."""
    columns: list[tuple[pa.Field, pa.Array]] = [
        (pa.field("row", pa.uint32()), pa.array(numbers, pa.uint32()))
    ]
    if firsts is not None and tags is not None:
        columns.append((pa.field("first", pa.uint32()), pa.array(firsts, pa.uint32())))
        columns.append((pa.field("tag", pa.binary(8)), pa.array(tags, pa.binary(8))))
    else:
        columns.append((pa.field("id", pa.string()), pa.array(ids, pa.string())))
    columns.append((pa.field("ts", pa.float64()), pa.array([r["ts"] for r in rows], pa.float64())))
    latency = pa.array([r["latency_ms"] for r in rows], pa.float64()).cast(pa.float32())
    columns.append((pa.field("latency_ms", pa.float32()), latency))
    columns += _features(rows)
    columns += _outputs(rows)
    return stream(columns)


def stream(columns: Sequence[tuple[pa.Field, pa.Array]]) -> bytes:
    """A record's bytes: `columns` as one batch of an Arrow IPC stream."""
    schema = pa.schema([f for f, _ in columns])
    batch = pa.RecordBatch.from_arrays([a for _, a in columns], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema, options=_WRITE) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def keys(numbers: Sequence[int], tags: Sequence[bytes]) -> bytes:
    """A record's lookup keys: its row numbers (uint32), then its tags (8 bytes each)."""
    return np.asarray(numbers, dtype="<u4").tobytes() + b"".join(tags)


def read_keys(raw: bytes) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]:
    n = len(raw) // 12
    return np.frombuffer(raw, "<u4", n), np.frombuffer(raw, "<u8", n, offset=4 * n)


def decode(data: bytes, fields: Sequence[int] | None = None) -> pa.RecordBatch:
    """A record's batch; with `fields`, only the columns at those places are read."""
    options = None if fields is None else pa.ipc.IpcReadOptions(included_fields=list(fields))
    reader = pa.ipc.open_stream(pa.py_buffer(data), options=options)
    return reader.read_next_batch()


def is_json(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(b"json") == b"1"


def column_values(batch: pa.RecordBatch, name: str, take: Any = None) -> list[Any]:
    """The values of one column as they were logged (Python objects), of the rows at `take`
    (an integer array) if given. Numbers without nulls go through numpy: Arrow's take costs
    ~15 us a column, a numpy index ~1."""
    index = batch.schema.get_field_index(name)
    field = batch.schema.field(index)
    column = batch.column(index)
    kind = field.type
    if (pa.types.is_floating(kind) or pa.types.is_integer(kind)) and not column.null_count:
        values = column.to_numpy()
        if take is not None:
            values = values[take]
        if pa.types.is_float32(kind):
            values = values.astype(np.float64)
        return list(values.tolist())
    if pa.types.is_dictionary(kind):  # its to_pylist costs ~1.5 us a value
        words = column.dictionary.to_pylist()
        codes = column.indices.to_pylist()
        if take is not None:
            codes = [codes[i] for i in take.tolist()]
        return [None if c is None else words[c] for c in codes]
    every = column.to_pylist()
    picked = every if take is None else [every[i] for i in take.tolist()]
    if is_json(field):
        loads = orjson.loads
        return [loads(v) for v in picked]
    return picked


def rows_of(batch: pa.RecordBatch, take: Any = None) -> tuple[list[Any], list[Any]]:
    """(features, output) of each row of `batch` (of the rows at `take`), as logged."""
    names = batch.schema.names
    if "features" in names:
        feats = column_values(batch, "features", take)
    else:
        keys = [n[len(FEATURE) :] for n in names if n.startswith(FEATURE)]
        cols = [column_values(batch, FEATURE + k, take) for k in keys]
        n = batch.num_rows if take is None else len(take)
        feats = [dict(zip(keys, vs, strict=True)) for vs in zip(*cols, strict=True)] or [
            {} for _ in range(n)
        ]
    if "output" in names:
        outs = column_values(batch, "output", take)
    elif "value" in names:
        outs = [{"value": v} for v in column_values(batch, "value", take)]
    else:
        classes = [n[len(PROBABILITY) :] for n in names if n.startswith(PROBABILITY)]
        probs = [column_values(batch, PROBABILITY + k, take) for k in classes]
        labels = column_values(batch, "label", take)
        outs = [
            {"label": label, "probabilities": dict(zip(classes, ps, strict=True))}
            for label, *ps in zip(labels, *probs, strict=True)
        ]
    return feats, outs
