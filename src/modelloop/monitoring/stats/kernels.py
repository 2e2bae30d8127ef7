"""Count vectors in, statistics out: validation, the vectorised kernels (one distribution per
row, shared with `noise.py`) and the scalar statistics. Conventions: the package's docstring."""

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Kind = Literal["numeric", "categorical"]
Statistic = Literal["psi", "wasserstein", "linf", "missing", "unseen"]

NUMERIC_STATISTICS: tuple[Statistic, ...] = ("wasserstein", "psi", "missing")
CATEGORICAL_STATISTICS: tuple[Statistic, ...] = ("linf", "psi", "unseen", "missing")

PSI_EPS = 1e-4
"""Smallest share a bin may have inside PSI (see `psi`)."""


# -- helpers ---------------------------------------------------------------------------------


def _counts(values: npt.ArrayLike, name: str) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D count vector, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} has no bins")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts")
    return a


def _pair(ref: npt.ArrayLike, cur: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    r, c = _counts(ref, "reference counts"), _counts(cur, "current counts")
    if r.shape != c.shape:
        raise ValueError(f"reference has {r.size} bins, current has {c.size}")
    return r, c


def _shares(counts: FloatArray) -> FloatArray:
    """Row-wise shares; rows that sum to 0 become NaN (callers mask them)."""
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = counts / total
    return out


def _one(values: FloatArray) -> float | None:
    v = float(values[0])
    return None if math.isnan(v) else v


def categorical_counts(counts: npt.ArrayLike, other: int) -> FloatArray:
    """Category counts with the `other` bucket appended as one more category."""
    return np.append(np.asarray(counts, dtype=np.float64), float(other))


# -- vectorised kernels (one distribution per row) -------------------------------------------


def psi_rows(ref: FloatArray, cur: FloatArray, eps: float = PSI_EPS) -> FloatArray:
    """PSI per row of `cur` (k, B) against `ref` (B,) or (k, B); NaN where a row is empty."""
    return _psi_against(_psi_shares(ref, eps), cur, eps)


def _psi_shares(counts: FloatArray, eps: float) -> FloatArray:
    """Shares floored at `eps` and renormalised, as PSI compares them."""
    p = np.maximum(_shares(counts), eps)
    out: FloatArray = p / p.sum(axis=-1, keepdims=True)
    return out


def _psi_against(p: FloatArray, cur: FloatArray, eps: float) -> FloatArray:
    """`psi_rows` with the reference side (`_psi_shares`) computed beforehand."""
    q = _psi_shares(cur, eps)
    out: FloatArray = np.sum((q - p) * np.log(q / p), axis=-1)
    return out


def bin_positions(
    centroids: npt.ArrayLike, ref_counts: npt.ArrayLike, edges: Sequence[float] | None = None
) -> FloatArray:
    """Where each bin's mass sits for Wasserstein: the reference centroid of the bin.

    A bin the reference left empty has no centroid (the profile stores 0.0 there). It gets the
    midpoint of its edges when `edges` are given (the outer bins: their one edge), otherwise a
    position interpolated by bin index between the neighbouring non-empty bins. Positions stay
    non-decreasing either way, which W1 on cumulative shares needs.
    """
    x = np.array(centroids, dtype=np.float64)
    r = np.asarray(ref_counts, dtype=np.float64)
    if x.shape != r.shape:
        raise ValueError(f"{x.size} centroids for {r.size} bins")
    empty = r <= 0
    if not empty.any() or empty.all():
        return x
    idx = np.arange(x.size)
    if edges is not None and len(edges) == x.size - 1 and x.size > 1:
        e = np.asarray(edges, dtype=np.float64)
        lo = np.concatenate(([e[0]], e))
        hi = np.concatenate((e, [e[-1]]))
        x[empty] = (lo[empty] + hi[empty]) / 2
    else:
        x[empty] = np.interp(idx[empty], idx[~empty], x[~empty])
    return np.maximum.accumulate(x)


def wasserstein_rows(
    ref: FloatArray, cur: FloatArray, positions: FloatArray, ref_std: float
) -> FloatArray:
    """Normalised W1 per row (see `wasserstein_binned`); NaN where a row is empty."""
    p = _shares(ref)
    return _wasserstein_against(p, np.cumsum(p, axis=-1), np.diff(positions), cur, ref_std)


def _wasserstein_against(
    p: FloatArray, p_cdf: FloatArray, gaps: FloatArray, cur: FloatArray, ref_std: float
) -> FloatArray:
    """`wasserstein_rows` with the reference side computed beforehand: its shares `p`, their
    cumulative sums and the gaps between the bin positions."""
    q = _shares(cur)
    raw = _w1_raw(p_cdf, gaps, q)
    if ref_std > 0 and math.isfinite(ref_std):
        out: FloatArray = raw / ref_std
        return out
    # Constant reference: drift iff current mass falls in a bin the reference never used.
    outside = np.sum(np.where(p > 0, 0.0, q), axis=-1)
    return np.where(np.isnan(outside), np.nan, np.where(outside > 0, np.inf, 0.0))


def _w1_raw(p_cdf: FloatArray, gaps: FloatArray, q: FloatArray) -> FloatArray:
    """W1 (not normalised) between reference cumulative shares and current shares `q`."""
    cdf_gap = np.abs(p_cdf - np.cumsum(q, axis=-1))[..., :-1]
    raw: FloatArray = np.sum(cdf_gap * gaps, axis=-1)
    return raw


def linf_rows(ref: FloatArray, cur: FloatArray) -> FloatArray:
    """Largest absolute share difference per row; NaN where a row is empty."""
    return _linf_against(_shares(ref), cur)


def _linf_against(p: FloatArray, cur: FloatArray) -> FloatArray:
    """`linf_rows` with the reference shares `p` computed beforehand."""
    out: FloatArray = np.max(np.abs(_shares(cur) - p), axis=-1)
    return out


# -- scalar statistics ----------------------------------------------------------------------


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = PSI_EPS) -> float | None:
    """Population stability index between two count vectors on the same bins.

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i) over the reference shares p and current shares q.
    An empty bin would make ln blow up, so shares are first floored at `eps` (default 1e-4, i.e.
    one row in 10k) and renormalised to sum to 1; bins with both shares above eps are untouched
    except for that renormalisation, which is negligible unless many bins are empty. Under no
    drift, PSI ~ chi2(B-1) * (1/n + 1/N): its sampling noise falls like 1/n, not 1/sqrt(n).
    None if either vector is empty (sums to 0).
    """
    r, c = _pair(ref_counts, cur_counts)
    return _one(psi_rows(r, c[None, :], eps))


def wasserstein_binned(
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    centroids: npt.ArrayLike,
    ref_std: float,
    edges: Sequence[float] | None = None,
) -> float | None:
    """Normalised Wasserstein-1: W1 between the two binned distributions / reference std.

    Each bin's mass is placed at the reference centroid of the bin (`bin_positions`; `edges` only
    matter for bins the reference left empty), and W1 = sum_i |P(i) - Q(i)| * (x_(i+1) - x_i) over
    the cumulative shares P, Q. Binning on centroids reads 2-3 % below W1 on raw values: mass moved
    within a bin is invisible. Dividing by the reference std makes it unit-free: a mean shift of
    0.25 std reads ~0.25.

    A constant reference (std 0, or not finite) has no scale: the result is 0.0 while every current
    value falls in bins the reference holds, and inf once any falls elsewhere (any move off a
    constant is an unbounded change relative to its spread; a threshold always flags it). None if
    either vector is empty.
    """
    r, c = _pair(ref_counts, cur_counts)
    x = bin_positions(centroids, r, edges)
    return _one(wasserstein_rows(r, c[None, :], x, float(ref_std)))


def linf(ref_freq_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float | None:
    """L-infinity distance between category share vectors: max_i |q_i - p_i|.

    Pass the `other` bucket as the last category in both (`categorical_counts`). A 10-point move
    in one category's share reads 0.10 whatever the number of categories. None if either vector
    is empty.
    """
    r, c = _pair(ref_freq_counts, cur_counts)
    return _one(linf_rows(r, c[None, :]))


def missing_rate(missing: int, rows: int) -> float | None:
    """Share of missing values among `rows` (missing included); None for an empty window."""
    if missing < 0 or rows < missing:
        raise ValueError(f"missing={missing} does not fit in rows={rows}")
    return missing / rows if rows > 0 else None


def rate_delta(ref_part: int, ref_rows: int, cur_part: int, cur_rows: int) -> float | None:
    """Current rate minus reference rate (signed); None if either has no rows."""
    r, c = missing_rate(ref_part, ref_rows), missing_rate(cur_part, cur_rows)
    return None if r is None or c is None else c - r


def unseen_rate(cur_counts: npt.ArrayLike, cur_other: int) -> float | None:
    """Share of `other` (categories not seen in training) among the window's present values."""
    c = np.asarray(cur_counts, dtype=np.float64)
    total = float(c.sum()) + cur_other
    return cur_other / total if total > 0 else None
