"""Binning rules shared by training (which fixes the bins) and monitoring (which fills them)."""

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from modelloop.store.metadata import CategoricalProfile, NumericProfile

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def numeric_bins(values: npt.ArrayLike, edges: Sequence[float]) -> tuple[IntArray, int]:
    """Count `values` into the bins of `edges`; return (counts per bin, missing count)."""
    x = np.asarray(values, dtype=np.float64)
    finite = ~np.isnan(x)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x[finite], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)
    return counts, int((~finite).sum())


def categorical_bins(
    values: Sequence[object], categories: Sequence[str]
) -> tuple[IntArray, int, int]:
    """Count `values` per category: (counts, other, missing); None, NaN and "" are missing."""
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories), dtype=np.int64)
    other = missing = 0
    tally = _tally(values)
    for v, n in tally.items() if tally is not None else ((v, 1) for v in values):
        if v is None or v == "" or (isinstance(v, float) and v != v):
            missing += n
            continue
        i = index.get(str(v))
        if i is None:
            other += n
        else:
            counts[i] += n
    return counts, other, missing


def _tally(values: Sequence[object]) -> Counter[object] | None:
    """How often each distinct value occurs (counted in C), when counting equal values together
    changes nothing: for text, None and NaN; not for numbers, as 1, 1.0 and True are equal but
    are the categories "1", "1.0" and "True"."""
    try:
        tally = Counter(values)
    except TypeError:  # an unhashable value
        return None
    for v in tally:
        if not (type(v) is str or v is None or (type(v) is float and v != v)):
            return None
    return tally


def numeric_profile(values: npt.ArrayLike, n_bins: int = 20) -> NumericProfile:
    x = np.asarray(values, dtype=np.float64)
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        return NumericProfile(
            edges=[], counts=[0], centroids=[0.0], missing=int(x.size), mean=0.0, std=0.0
        )
    qs = np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = np.unique(qs)
    # A left-closed bin [e_i, e_i+1) must not start at the minimum, or bin 0 stays empty.
    edges = edges[edges > finite.min()]
    counts, missing = numeric_bins(x, edges.tolist())
    idx = np.searchsorted(edges, finite, side="right")
    sums = np.bincount(idx, weights=finite, minlength=len(edges) + 1)
    centroids = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return NumericProfile(
        edges=edges.tolist(),
        counts=counts.tolist(),
        centroids=centroids.tolist(),
        missing=missing,
        mean=float(finite.mean()),
        std=float(finite.std()),
    )


def categorical_profile(values: Sequence[object], max_categories: int = 100) -> CategoricalProfile:
    seen: dict[str, int] = {}
    for v in values:
        if v is None or v == "" or (isinstance(v, float) and v != v):
            continue
        seen[str(v)] = seen.get(str(v), 0) + 1
    ranked = sorted(seen, key=lambda c: (-seen[c], c))[:max_categories]
    counts, other, missing = categorical_bins(values, ranked)
    return CategoricalProfile(
        categories=ranked, counts=counts.tolist(), other=other, missing=missing
    )
