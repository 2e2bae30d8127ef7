"""Drift statistics on binned counts: pure functions, numpy only.

Training fixes the bins (`store.profile`); the monitor folds traffic into the same bins, so every
statistic here takes count vectors, never raw values, and costs the same for 1k or 10M rows.

Conventions shared by every function:

- Counts are non-negative; a vector whose total is 0 has no distribution, and a statistic that
  needs one returns None ("not judged"), never NaN and never an exception. Vectors of different
  lengths are a caller bug and raise ValueError.
- Missing values are not part of the distributions: numeric bins and category shares are over
  present values only, and the missing rate is its own statistic. An all-missing window therefore
  has no distribution statistics (None) but a defined missing rate (1.0).
- For categorical features the `other` bucket (categories not seen in training) is appended to the
  category counts, in the reference and in the window alike (`categorical_counts`).

The kernels `psi_rows`, `wasserstein_rows` and `linf_rows` take 2-D arrays (one distribution per
row) so `noise.py` computes exactly the same numbers, vectorised over thousands of resampled
windows.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from modelloop.store.metadata import CategoricalProfile, NumericProfile

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
    p, q = _shares(ref), _shares(cur)
    p = np.maximum(p, eps)
    q = np.maximum(q, eps)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
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
    p, q = _shares(ref), _shares(cur)
    gaps = np.diff(positions)
    cdf_gap = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1))[..., :-1]
    raw: FloatArray = np.sum(cdf_gap * gaps, axis=-1)
    if ref_std > 0 and math.isfinite(ref_std):
        out: FloatArray = raw / ref_std
        return out
    # Constant reference: drift iff current mass falls in a bin the reference never used.
    outside = np.sum(np.where(p > 0, 0.0, q), axis=-1)
    return np.where(np.isnan(outside), np.nan, np.where(outside > 0, np.inf, 0.0))


def linf_rows(ref: FloatArray, cur: FloatArray) -> FloatArray:
    """Largest absolute share difference per row; NaN where a row is empty."""
    out: FloatArray = np.max(np.abs(_shares(cur) - _shares(ref)), axis=-1)
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


# -- per-feature result ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's statistics for one window.

    A statistic that cannot be computed is None: distribution statistics when the window (or the
    reference) has no present values, everything when the window is empty; `not_judged` says why.
    `judge` fills `flagged` (statistics above their threshold, strongest first) and `decided_by`:
    the strongest flagged statistic, or while nothing is flagged the one the feature is mainly
    judged on (Wasserstein for numeric, L-infinity for categorical).
    """

    feature: str
    kind: Kind
    rows: int
    missing: int
    psi: float | None = None
    wasserstein: float | None = None
    linf: float | None = None
    missing_rate: float | None = None
    missing_delta: float | None = None
    unseen_rate: float | None = None
    unseen_delta: float | None = None
    not_judged: str | None = None
    flagged: tuple[Statistic, ...] = ()
    decided_by: Statistic | None = None

    @property
    def statistics(self) -> tuple[Statistic, ...]:
        return NUMERIC_STATISTICS if self.kind == "numeric" else CATEGORICAL_STATISTICS

    @property
    def primary(self) -> Statistic:
        return "wasserstein" if self.kind == "numeric" else "linf"

    @property
    def judged(self) -> bool:
        return any(self.score(s) is not None for s in self.statistics)

    @property
    def drifted(self) -> bool:
        return bool(self.flagged)

    def score(self, statistic: Statistic) -> float | None:
        """The value compared with the threshold: |missing delta|, the unseen-share increase."""
        if statistic == "missing":
            return None if self.missing_delta is None else abs(self.missing_delta)
        if statistic == "unseen":
            return self.unseen_delta
        value: float | None = getattr(self, statistic)
        return value


def numeric_drift(
    feature: str,
    ref: NumericProfile,
    cur_counts: npt.ArrayLike,
    cur_missing: int,
    eps: float = PSI_EPS,
) -> FeatureDrift:
    """Statistics of a numeric window (counts from `store.profile.numeric_bins`)."""
    r = _counts(ref.counts, "reference counts")
    c = _counts(cur_counts, "current counts")
    present, ref_present = int(c.sum()), int(r.sum())
    rows = present + cur_missing
    base = FeatureDrift(
        feature=feature,
        kind="numeric",
        rows=rows,
        missing=cur_missing,
        missing_rate=missing_rate(cur_missing, rows),
        missing_delta=rate_delta(ref.missing, ref_present + ref.missing, cur_missing, rows),
    )
    reason = _why_not(rows, present, ref_present)
    if reason:
        return replace(base, not_judged=reason)
    return replace(
        base,
        psi=psi(r, c, eps),
        wasserstein=wasserstein_binned(r, c, ref.centroids, ref.std, ref.edges),
    )


def categorical_drift(
    feature: str,
    ref: CategoricalProfile,
    cur_counts: npt.ArrayLike,
    cur_other: int,
    cur_missing: int,
    eps: float = PSI_EPS,
) -> FeatureDrift:
    """Statistics of a categorical window (from `store.profile.categorical_bins`)."""
    r = categorical_counts(ref.counts, ref.other)
    c = categorical_counts(cur_counts, cur_other)
    present, ref_present = int(c.sum()), int(r.sum())
    rows = present + cur_missing
    ref_unseen = unseen_rate(ref.counts, ref.other)
    cur_unseen = unseen_rate(cur_counts, cur_other)
    base = FeatureDrift(
        feature=feature,
        kind="categorical",
        rows=rows,
        missing=cur_missing,
        missing_rate=missing_rate(cur_missing, rows),
        missing_delta=rate_delta(ref.missing, ref_present + ref.missing, cur_missing, rows),
    )
    reason = _why_not(rows, present, ref_present)
    if reason:
        return replace(base, not_judged=reason)
    return replace(
        base,
        psi=psi(r, c, eps),
        linf=linf(r, c),
        unseen_rate=cur_unseen,
        unseen_delta=None if cur_unseen is None or ref_unseen is None else cur_unseen - ref_unseen,
    )


def _why_not(rows: int, present: int, ref_present: int) -> str | None:
    if rows == 0:
        return "empty window"
    if present == 0:
        return "all values missing"
    if ref_present == 0:
        return "reference has no values"
    return None


def judge(drift: FeatureDrift, thresholds: Mapping[Statistic, float]) -> FeatureDrift:
    """Flag every statistic whose score exceeds its threshold (statistics absent from
    `thresholds`, or not computed, are not judged). The strongest flag, by score / threshold,
    decides."""
    ratios: dict[Statistic, float] = {}
    for stat in drift.statistics:
        value, limit = drift.score(stat), thresholds.get(stat)
        if value is None or limit is None or not value > limit:
            continue
        ratios[stat] = value / limit if limit > 0 else math.inf
    flagged = tuple(sorted(ratios, key=lambda s: -ratios[s]))
    decided: Statistic | None
    if flagged:
        decided = flagged[0]
    elif drift.score(drift.primary) is not None:
        decided = drift.primary
    elif drift.missing_delta is not None:
        decided = "missing"
    else:
        decided = None
    return replace(drift, flagged=flagged, decided_by=decided)
