"""A batch's columns as the window's bins read them (numpy only, no Python loop over rows).

The rules are those of the row-by-row path (`window._floats`, `profile.categorical_bins`,
`str(label)`), applied to whole arrays:
- a numeric feature: numbers as floats, None and text NaN;
- a categorical value: None, "" and a float NaN are missing, anything else counts as the
  category `str(value)` (so 1 is "1", 1.0 is "1.0" and True is "True"), or as other. A float64
  column (the store's form of a feature whose every value is a number) cannot tell 1 from 1.0:
  its integral values read as the integers the service takes ("1"), the others as `str(v)`.
"""

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from modelloop.store.log.batch import Batch, FloatArray, ObjectArray

IntArray = npt.NDArray[np.int64]

MISSING = -2  # a code: the value is missing
OTHER = -1  # a code: the value is none of the names
# up to this many names, matching compares the object array with each (C calls, no text made
# of the values); past it, the values become text once and are looked up by binary search
_COMPARE_MAX = 8
_TEXT = np.dtypes.StringDType()  # keeps a trailing NUL, which "U" strips
_NONE: Any = None  # numpy's stubs take no None to compare with
_is_instance: Any = np.frompyfunc(isinstance, 2, 1)  # an object ufunc of a builtin


def floats(values: FloatArray | ObjectArray) -> FloatArray:
    """A numeric feature's values as floats: None and text are NaN (as `window._floats`)."""
    if values.dtype == np.float64:
        return cast(FloatArray, values)
    x = np.asarray(values, dtype=object)
    bad = np.equal(x, _NONE) | _is_instance(x, str).astype(bool)
    if bad.any():
        x = x.copy()
        x[bad] = np.nan
    return np.asarray(x, dtype=np.float64)


class Names:
    """Codes of values against names (categories, classes): a name's index, OTHER or MISSING."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.order = np.argsort(np.asarray(self.names, dtype=_TEXT), kind="stable")
        self.sorted = np.asarray(self.names, dtype=_TEXT)[self.order]
        # the float each name is the text of, as a float64 column's value reads (see above)
        numbers = {v: i for i, n in enumerate(self.names) if (v := _number(n)) is not None}
        self.num_values = np.asarray(sorted(numbers), dtype=np.float64)
        self.num_index = np.asarray([numbers[v] for v in sorted(numbers)], dtype=np.int64)

    def _lookup(self, text: npt.NDArray[np.str_]) -> IntArray:
        if not self.names:
            return np.full(text.shape, OTHER, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted, text), len(self.names) - 1)
        return np.where(self.sorted[pos] == text, self.order[pos], OTHER).astype(np.int64)

    def codes(self, values: FloatArray | ObjectArray, missing: str = "feature") -> IntArray:
        """Each value's code. Missing: a feature's value ("feature") when None, "" or a float
        NaN; a predicted label's ("label", counted as `str(label)`) when ""; none ("none")."""
        label = missing != "feature"
        if values.dtype == np.float64:
            return self._number_codes(cast(FloatArray, values), label)
        x = np.asarray(values, dtype=object)
        codes = np.full(x.shape, OTHER, dtype=np.int64)
        if len(self.names) <= _COMPARE_MAX:
            for i, name in enumerate(self.names):
                codes[np.equal(x, name)] = i
            rest = np.flatnonzero(codes == OTHER)
        else:
            rest = np.arange(x.size)
        if rest.size:
            sub = x[rest]
            found = self._lookup(sub.astype(_TEXT))
            if missing == "feature":
                lost = (
                    np.equal(sub, _NONE)
                    | np.equal(sub, "")
                    | (_is_instance(sub, float).astype(bool) & np.not_equal(sub, sub))
                )
                found[lost] = MISSING
            elif missing == "label":
                found[np.equal(sub, "")] = MISSING
            codes[rest] = found
        return codes

    def _number_codes(self, x: FloatArray, label: bool) -> IntArray:
        nan = np.isnan(x)
        codes = np.full(x.shape, OTHER, dtype=np.int64)
        if self.num_values.size:
            pos = np.minimum(np.searchsorted(self.num_values, x), self.num_values.size - 1)
            hit = self.num_values[pos] == x
            codes[hit] = self.num_index[pos[hit]]
        if label:  # str(nan) is "nan": a name, or other
            if nan.any():
                codes[nan] = self._lookup(np.asarray(["nan"], dtype=_TEXT))[0]
        else:
            codes[nan] = MISSING
        return codes


def bins(codes: IntArray, size: int) -> tuple[IntArray, int, int]:
    """(counts per name, other, missing) of the codes of `size` names, as `categorical_bins`
    counts."""
    counts = np.bincount(codes + 2, minlength=size + 2)
    return counts[2:].astype(np.int64), int(counts[1]), int(counts[0])


def _number(name: str) -> float | None:
    """The float whose text (in a float64 column) is `name`, if any."""
    try:
        v = float(name)
    except ValueError:
        return None
    if v != v:
        return None
    text = str(int(v)) if v.is_integer() else str(v)
    return v if text == name else None


class Bins:
    """The bins of several numeric columns (one list of edges each), found for all of them at
    once: `searchsorted(edges, x, side="right")` of each column, offset by the bins of the
    columns before it (column f's bin i is `offsets[f] + i`); NaN is `total` (missing).

    A table over a fine uniform grid of each column's range gives the bin of a value whose
    cell (and the cells either side) holds no edge; the few values near an edge (and every
    value of a column whose range the grid cannot cut) are searched for exactly, all in one
    search of (column, value) pairs."""

    # cells per column: ~64 per edge of the column with the most (the values searched for are
    # those within a cell of an edge, ~3 / 64 of them), within bounds on the table's size
    CELLS = (1024, 16384)

    def __init__(self, edges: Sequence[FloatArray]) -> None:
        sizes = [e.size + 1 for e in edges]
        self.offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        self.total = int(sum(sizes))
        self.bounds = [(int(o), int(o) + s) for o, s in zip(self.offsets, sizes, strict=True)]
        most = max((e.size for e in edges), default=0)
        c = self.cells = int(np.clip(64 * most, *self.CELLS))
        self.lo = np.zeros((len(edges), 1))
        self.scale = np.zeros((len(edges), 1))
        table = np.full((len(edges), c), -1, dtype=np.int64)
        for f, e in enumerate(edges):
            if e.size == 0:
                table[f] = self.offsets[f]  # one bin: every value is in it
                continue
            width = float(e[-1] - e[0]) / (c - 8) or max(abs(float(e[0])), 1.0) / c
            lo = float(e[0]) - 4 * width
            # cells much wider than the rounding of the values near them, or no table
            big = max(abs(lo), abs(float(e[-1])) + 4 * width)
            if not (np.isfinite(big) and width > big * 1e-9 and np.isfinite(1.0 / width)):
                continue  # every value searched for
            self.lo[f], self.scale[f] = lo, 1.0 / width
            # cuts[k] = lo + (k - 1) * width: cell i spans cuts[i + 1] .. cuts[i + 2], and
            # with its neighbours cuts[i] .. cuts[i + 3] (the outer cells reach to infinity)
            cuts = lo + np.arange(-1, c + 2) * width
            cuts[0], cuts[-1] = -np.inf, np.inf
            below = np.searchsorted(e, cuts, side="right")
            start, stop = below[:c], below[3 : c + 3]
            table[f] = np.where(start == stop, start + self.offsets[f], -1)
        self.table = table.ravel()
        self.base = (np.arange(len(edges), dtype=np.int64) * c)[:, None]
        self.keys = np.zeros(sum(e.size for e in edges), dtype=np.complex128)
        self.keys.real = np.repeat(np.arange(len(edges)), [e.size for e in edges])
        self.keys.imag = np.concatenate([*edges, np.zeros(0)])

    def find(self, x: FloatArray) -> tuple[IntArray, IntArray]:
        """Each value's bin (rows of `x` are the columns), and each column's missing count."""
        nan = np.isnan(x)
        with np.errstate(invalid="ignore", over="ignore"):  # inf times a column's scale of 0
            v = (x - self.lo) * self.scale
        np.clip(v, 0, self.cells - 1, out=v)
        v[np.isnan(v)] = 0  # missing, or a column without a table: found below
        found = self.table[v.astype(np.int64) + self.base]
        found[nan] = self.total
        near = np.flatnonzero(found < 0)
        if near.size:
            column = near // x.shape[1]
            pairs = np.empty(near.size, dtype=np.complex128)  # (column, value), in order
            pairs.real, pairs.imag = column, x.ravel()[near]
            flat = found.reshape(-1)
            flat[near] = np.searchsorted(self.keys, pairs, side="right") + column
        return found, nan.sum(axis=1)


def join(batches: Sequence[Batch]) -> Batch:
    """Consecutive batches (of one version) as one: what folding them costs is mostly per
    call, so the monitor folds a chunk's batches at once. A column some batches lack is
    missing there; a feature float64 in some and objects in others becomes objects, its
    numbers as the float64 column reads them (an integral value as the integer)."""
    if len(batches) == 1:
        return batches[0]
    first, last = batches[0], batches[-1]
    names = list(dict.fromkeys(n for b in batches for n in b.features))
    features: dict[str, FloatArray | ObjectArray] = {}
    for name in names:
        cols = [b.features.get(name) for b in batches]
        if all(c is None or c.dtype == np.float64 for c in cols):
            features[name] = np.concatenate(
                [
                    np.full(b.rows, np.nan) if c is None else c
                    for b, c in zip(batches, cols, strict=True)
                ]
            )
        else:
            features[name] = np.concatenate(
                [_objects(c, b.rows) for b, c in zip(batches, cols, strict=True)]
            )
    keys = list(dict.fromkeys(k for b in batches for k in b.probabilities))
    labelled = any(b.labels is not None for b in batches)
    valued = any(b.values is not None for b in batches)
    return Batch(
        seq=last.seq,
        model=first.model,
        version=first.version,
        ts=np.concatenate([b.ts for b in batches]),
        latency_ms=np.concatenate([b.latency_ms for b in batches]),
        features=features,
        labels=np.concatenate(
            [np.full(b.rows, None, dtype=object) if b.labels is None else b.labels for b in batches]
        )
        if labelled
        else None,
        probabilities={
            k: np.concatenate([b.probabilities.get(k, np.full(b.rows, np.nan)) for b in batches])
            for k in keys
        },
        values=np.concatenate(
            [np.full(b.rows, np.nan) if b.values is None else b.values for b in batches]
        )
        if valued
        else None,
    )


_int: Any = np.frompyfunc(int, 1, 1)


def _objects(col: FloatArray | ObjectArray | None, rows: int) -> ObjectArray:
    """A column as objects: None where missing; a float64 column's integral values as ints."""
    if col is None:
        return np.full(rows, None, dtype=object)
    if col.dtype != np.float64:
        return np.asarray(col, dtype=object)
    out = col.astype(object)
    integral = np.isfinite(col) & (col == np.floor(col))
    if integral.any():
        out[integral] = _int(col[integral])
    out[np.isnan(col)] = None
    return out
