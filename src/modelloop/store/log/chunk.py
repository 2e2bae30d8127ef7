"""A request's predictions under generated ids, column by column, as the service hands them over.

The row path (`LogRow`, one dict per prediction) costs the writer thread a dict walk and an id
parse per row; a chunk carries what the record holds already in columns: the request's place
under its token (`first`, `tag`), one list per feature, the labels and probabilities (or values)
as the model gave them. `encode` turns the chunks of one record into the record's bytes with no
per-row Python; `log_rows` gives the same predictions as log rows, for the spool, for the
quarantine's bisection, and for any record `encode` does not take (it says so with None), so
both paths store the same values.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from modelloop.store.log import encoding
from modelloop.store.log.rows import LogRow


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """`len(chunk)` predictions of one request, numbered `first`.. under `token`.

    `features`: one list per name in `names`, the values as the caller sent them, except that
    a float NaN stands for null (JSON has no NaN; an OIP NaN is logged as null). `labels`:
    the predicted labels (classification, with `probabilities`, one list per row in the order
    of `classes`) or the predicted values (regression, `probabilities` None)."""

    model: str
    version: int
    token: str
    first: int
    tag: bytes
    request_id: str  # the ids are `<request_id>:<i>`
    ts: float
    latency_ms: float
    names: Sequence[str]
    features: Sequence[list[Any]]
    labels: list[Any]
    probabilities: list[list[float]] | None
    classes: Sequence[str]

    def __len__(self) -> int:
        return len(self.labels)

    def outputs(self) -> list[dict[str, Any]]:
        if self.probabilities is None:
            return [{"value": v} for v in self.labels]
        keys = self.classes
        return [
            {"label": label, "probabilities": dict(zip(keys, p, strict=True))}
            for label, p in zip(self.labels, self.probabilities, strict=True)
        ]

    def log_rows(self) -> list[LogRow]:
        names = self.names
        cols = [[None if type(v) is float and v != v else v for v in c] for c in self.features]
        rid = self.request_id
        return [
            {
                "id": f"{rid}:{i}",
                "ts": self.ts,
                "model": self.model,
                "version": self.version,
                "features": dict(zip(names, values, strict=True)),
                "output": out,
                "latency_ms": self.latency_ms,
            }
            for i, (out, *values) in enumerate(zip(self.outputs(), *cols, strict=True))
        ]


Entry = LogRow | Chunk  # what the log writer is handed: a row, or a request's chunk


def count(entries: Sequence[Entry]) -> int:
    """The predictions in `entries`."""
    return sum(len(e) if type(e) is Chunk else 1 for e in entries)


def log_rows(entries: Sequence[Entry]) -> list[LogRow]:
    rows: list[LogRow] = []
    for e in entries:
        if type(e) is Chunk:
            rows += e.log_rows()
        else:
            rows.append(e)  # type: ignore[arg-type]
    return rows


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    keys: bytes
    first_row: int
    last_row: int
    rows: int
    ts_min: float
    ts_max: float


def _feature(name: str, values: list[Any]) -> tuple[pa.Field, pa.Array]:
    """A feature column as `encoding` makes it from rows (NaN read as null)."""
    if set(map(type, values)) == {float}:
        wide = np.array(values, dtype=np.float64)
        nan = np.isnan(wide)
        array = pa.array(wide, mask=nan) if nan.any() else pa.array(wide)
        return pa.field(encoding.FEATURE + name, pa.float64()), array
    logged = [None if type(v) is float and v != v else v for v in values]
    return encoding.column(encoding.FEATURE + name, logged)


def _outputs(chunks: Sequence[Chunk]) -> list[tuple[pa.Field, pa.Array]] | None:
    labels: list[Any] = []
    for c in chunks:
        labels += c.labels
    kinds = set(map(type, labels))
    first = chunks[0]
    if first.probabilities is None:
        if any(c.probabilities is not None for c in chunks) or kinds != {float}:
            return None
        return [encoding.floats("value", labels)]
    classes = list(first.classes)
    if not classes or not (kinds == {str} or kinds == {int}):
        return None
    probs: list[list[float]] = []
    for c in chunks:
        if c.probabilities is None or list(c.classes) != classes:
            return None
        probs += c.probabilities
    wide = np.asarray(probs, dtype=np.float64)
    if wide.shape != (len(labels), len(classes)):
        return None
    label = encoding.column("label", labels)
    if pa.types.is_binary(label[0].type):
        return None
    return [label] + [
        encoding.floats(encoding.PROBABILITY + k, np.ascontiguousarray(wide[:, j]))
        for j, k in enumerate(classes)
    ]


def encode(chunks: Sequence[Chunk]) -> Encoded | None:
    """One record of `chunks` (of one model version and token, rows not repeated), or None
    when its outputs take a form only the row path stores (then use `log_rows`)."""
    outputs = _outputs(chunks)
    if outputs is None:
        return None
    sizes = np.array([len(c) for c in chunks], dtype=np.int64)
    total = int(sizes.sum())
    firsts = np.repeat(np.array([c.first for c in chunks], dtype=np.uint32), sizes)
    starts = np.cumsum(sizes) - sizes
    numbers = firsts + (np.arange(total, dtype=np.int64) - np.repeat(starts, sizes)).astype(
        np.uint32
    )
    tags = np.repeat(np.frombuffer(b"".join(c.tag for c in chunks), "<u8"), sizes).tobytes()
    ts = np.repeat(np.array([c.ts for c in chunks], dtype=np.float64), sizes)
    latency = np.repeat(np.array([c.latency_ms for c in chunks], dtype=np.float64), sizes)
    tag_array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(8), total, [None, pa.py_buffer(tags)]
    )
    columns: list[tuple[pa.Field, pa.Array]] = [
        (pa.field("row", pa.uint32()), pa.array(numbers)),
        (pa.field("first", pa.uint32()), pa.array(firsts)),
        (pa.field("tag", pa.binary(8)), tag_array),
        (pa.field("ts", pa.float64()), pa.array(ts)),
        (pa.field("latency_ms", pa.float32()), pa.array(latency.astype(np.float32))),
    ]
    for j, name in enumerate(first_names := chunks[0].names):
        values: list[Any] = []
        for c in chunks:
            if c.names != first_names:
                return None
            values += c.features[j]
        columns.append(_feature(name, values))
    columns += outputs
    keys = numbers.astype("<u4").tobytes() + tags
    return Encoded(
        encoding.stream(columns),
        keys,
        int(numbers.min()),
        int(numbers.max()),
        total,
        float(ts.min()),
        float(ts.max()),
    )
