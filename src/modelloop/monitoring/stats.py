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
    prepared = NumericReference(ref, eps)
    prepared.validate()
    c = _counts(cur_counts, "current counts")
    return prepared.drifts(feature, c[None, :], [cur_missing], [None])[0]


def categorical_drift(
    feature: str,
    ref: CategoricalProfile,
    cur_counts: npt.ArrayLike,
    cur_other: int,
    cur_missing: int,
    eps: float = PSI_EPS,
) -> FeatureDrift:
    """Statistics of a categorical window (from `store.profile.categorical_bins`)."""
    c = categorical_counts(cur_counts, cur_other)
    return CategoricalReference(ref, eps).drifts(feature, c[None, :], [cur_missing], [None])[0]


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
    flagged, decided = _verdict(
        {s: drift.score(s) for s in drift.statistics}, drift.primary, thresholds
    )
    return replace(drift, flagged=flagged, decided_by=decided)


def _verdict(
    scores: Mapping[Statistic, float | None],
    primary: Statistic,
    thresholds: Mapping[Statistic, float],
) -> tuple[tuple[Statistic, ...], Statistic | None]:
    """`judge` on a feature's scores (`FeatureDrift.score` of each of its statistics, in order):
    the flagged statistics, strongest first, and the one that decides."""
    ratios: dict[Statistic, float] = {}
    for stat, value in scores.items():
        limit = thresholds.get(stat)
        if value is None or limit is None or not value > limit:
            continue
        ratios[stat] = value / limit if limit > 0 else math.inf
    flagged = tuple(sorted(ratios, key=lambda s: -ratios[s]))
    if flagged:
        return flagged, flagged[0]
    if scores[primary] is not None:
        return flagged, primary
    if scores["missing"] is not None:
        return flagged, "missing"
    return flagged, None


# -- a reference prepared for many windows ---------------------------------------------------
#
# A version's reference does not change between windows: its validated counts, bin positions,
# shares and cumulative shares are computed once here, and each window's statistics are the
# vectorised kernels' per-window half (`_psi_against`, ...), the same operations in the same
# order as `psi_rows` & co., so the numbers are identical. Several windows (the latest and the
# merged one) are scored together, one row each.


def count_rows(rows: Sequence[npt.ArrayLike], ndim: int = 2) -> FloatArray:
    """Several windows' count vectors of one feature as a (k, B) array, validated once (or of
    several features, (features, k, B) with `ndim=3`)."""
    a = np.array(rows, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"current counts must be 1-D count vectors of one length, got {a.shape}")
    if a.shape[-1] == 0:
        raise ValueError("current counts has no bins")
    _check_counts(a, "current counts")
    return a


def _check_counts(a: FloatArray, name: str) -> None:
    if not (np.isfinite(a).all() and (a >= 0).all()):
        raise ValueError(f"{name} must hold finite, non-negative counts")


def _none_if_nan(values: FloatArray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _judged(
    scores: Mapping[Statistic, float | None],
    primary: Statistic,
    thresholds: Mapping[Statistic, float] | None,
) -> tuple[tuple[Statistic, ...], Statistic | None]:
    return ((), None) if thresholds is None else _verdict(scores, primary, thresholds)


class NumericReference:
    """A numeric feature's reference profile, prepared for scoring many windows."""

    __slots__ = (
        "_error",
        "_scale_error",
        "cdf",
        "counts",
        "eps",
        "gaps",
        "missing",
        "present",
        "profile",
        "psi_shares",
        "shares",
        "std",
    )

    def __init__(self, profile: NumericProfile, eps: float = PSI_EPS) -> None:
        self.profile = profile
        self.eps = eps
        self.missing = profile.missing
        self.std = float(profile.std)
        # Errors are raised where the unprepared statistics would raise them: a bad reference
        # vector on every window, bad centroids only when a window is judged.
        self._error: str | None = None
        self._scale_error: str | None = None
        self.counts = self.shares = self.psi_shares = self.cdf = self.gaps = _EMPTY
        self.present = 0
        try:
            self.counts = _counts(profile.counts, "reference counts")
        except ValueError as e:
            self._error = str(e)
            return
        self.present = int(self.counts.sum())
        self.psi_shares = _psi_shares(self.counts, eps)
        self.shares = _shares(self.counts)
        self.cdf = np.cumsum(self.shares, axis=-1)
        try:
            self.gaps = np.diff(bin_positions(profile.centroids, self.counts, profile.edges))
        except ValueError as e:
            self._scale_error = str(e)

    def validate(self) -> None:
        if self._error is not None:
            raise ValueError(self._error)

    @property
    def groupable(self) -> bool:
        """Scored in a `NumericGroup`: valid, with values and a spread (the constant-reference
        branch of W1 is per feature)."""
        return (
            self._error is None
            and self._scale_error is None
            and self.present > 0
            and self.std > 0
            and math.isfinite(self.std)
        )

    def drifts(
        self,
        feature: str,
        counts: FloatArray,
        missing: Sequence[int],
        thresholds: Sequence[Mapping[Statistic, float] | None],
    ) -> list[FeatureDrift]:
        """One `FeatureDrift` per row of `counts` (validated: `count_rows`), judged on the
        row's thresholds (None: not judged, as `numeric_drift` returns it)."""
        self.validate()
        base = self._base(counts.sum(axis=-1).tolist(), missing)
        judged = [i for i, b in enumerate(base) if b[3] is None]
        psi_v: list[float | None] = [None] * len(base)
        w1_v: list[float | None] = [None] * len(base)
        if judged:
            cur = counts if len(judged) == len(base) else counts[judged]
            if cur.shape[1] != self.counts.size:
                raise ValueError(
                    f"reference has {self.counts.size} bins, current has {cur.shape[1]}"
                )
            psi = _none_if_nan(_psi_against(self.psi_shares, cur, self.eps))
            if self._scale_error is not None:
                raise ValueError(self._scale_error)
            w1 = _none_if_nan(_wasserstein_against(self.shares, self.cdf, self.gaps, cur, self.std))
            for j, i in enumerate(judged):
                psi_v[i], w1_v[i] = psi[j], w1[j]
        return self._build(feature, base, missing, thresholds, psi_v, w1_v)

    def _base(
        self, presents: Sequence[float], missing: Sequence[int]
    ) -> list[tuple[int, float | None, float | None, str | None]]:
        """Per row: rows, missing rate, missing delta and why it is not judged (None: it is)."""
        ref_rows = self.present + self.missing
        out = []
        for total, cur_missing in zip(presents, missing, strict=True):
            present = int(total)
            rows = present + cur_missing
            out.append(
                (
                    rows,
                    missing_rate(cur_missing, rows),
                    rate_delta(self.missing, ref_rows, cur_missing, rows),
                    _why_not(rows, present, self.present),
                )
            )
        return out

    def _build(
        self,
        feature: str,
        base: list[tuple[int, float | None, float | None, str | None]],
        missing: Sequence[int],
        thresholds: Sequence[Mapping[Statistic, float] | None],
        psi_v: Sequence[float | None],
        w1_v: Sequence[float | None],
    ) -> list[FeatureDrift]:
        out = []
        for i, (rows, rate, delta, reason) in enumerate(base):
            scores: dict[Statistic, float | None] = {
                "wasserstein": w1_v[i],
                "psi": psi_v[i],
                "missing": None if delta is None else abs(delta),
            }
            flagged, decided = _judged(scores, "wasserstein", thresholds[i])
            out.append(
                FeatureDrift(
                    feature=feature,
                    kind="numeric",
                    rows=rows,
                    missing=missing[i],
                    psi=psi_v[i],
                    wasserstein=w1_v[i],
                    missing_rate=rate,
                    missing_delta=delta,
                    not_judged=reason,
                    flagged=flagged,
                    decided_by=decided,
                )
            )
        return out


class NumericGroup:
    """Numeric features with as many bins as each other (all `groupable`), scored together: the
    kernels run once over a (features, windows, bins) array. Each (feature, window) row is
    reduced on its own, so its numbers are those `NumericReference.drifts` gives."""

    def __init__(self, refs: Sequence[NumericReference]) -> None:
        if not refs or not all(r.groupable for r in refs):
            raise ValueError("a group needs valid numeric references with a spread")
        if len({r.counts.size for r in refs}) != 1:
            raise ValueError("a group's references must have as many bins as each other")
        if len({r.eps for r in refs}) != 1:
            raise ValueError("a group's references must share their PSI eps")
        self.refs = list(refs)
        self.bins = refs[0].counts.size
        self.eps = refs[0].eps
        self.psi_shares = np.stack([r.psi_shares for r in refs])[:, None, :]
        self.shares = np.stack([r.shares for r in refs])[:, None, :]
        self.cdf = np.stack([r.cdf for r in refs])[:, None, :]
        self.gaps = np.stack([r.gaps for r in refs])[:, None, :]
        self.std = np.array([r.std for r in refs])[:, None]

    def drifts(
        self,
        features: Sequence[str],
        counts: FloatArray,
        missing: Sequence[Sequence[int]],
        thresholds: Sequence[Sequence[Mapping[Statistic, float] | None]],
    ) -> list[list[FeatureDrift]]:
        """Per feature, one `FeatureDrift` per window: `counts` is (features, windows, bins),
        validated (`count_rows` on each feature's windows, or on the whole array)."""
        if counts.shape[0] != len(self.refs) or counts.shape[2] != self.bins:
            raise ValueError(f"counts of shape {counts.shape} for {len(self.refs)} features")
        presents = counts.sum(axis=-1).tolist()
        # rows no statistic is computed for (an empty or all-missing window) come out NaN here
        # and are dropped; the judged rows are the same operations as `psi_rows` & co.
        with np.errstate(invalid="ignore", divide="ignore"):
            psi = _psi_against(self.psi_shares, counts, self.eps).tolist()
            w1 = (_w1_raw(self.cdf, self.gaps, _shares(counts)) / self.std).tolist()
        out = []
        for j, ref in enumerate(self.refs):
            base = ref._base(presents[j], missing[j])
            psi_v = [
                _nan_none(v) if b[3] is None else None for v, b in zip(psi[j], base, strict=True)
            ]
            w1_v = [
                _nan_none(v) if b[3] is None else None for v, b in zip(w1[j], base, strict=True)
            ]
            out.append(ref._build(features[j], base, missing[j], thresholds[j], psi_v, w1_v))
        return out


def _nan_none(v: float) -> float | None:
    return None if math.isnan(v) else v


class CategoricalReference:
    """A categorical feature's reference profile, prepared for scoring many windows."""

    __slots__ = (
        "_error",
        "counts",
        "eps",
        "missing",
        "present",
        "profile",
        "psi_shares",
        "shares",
        "unseen",
    )

    def __init__(self, profile: CategoricalProfile, eps: float = PSI_EPS) -> None:
        self.profile = profile
        self.eps = eps
        self.missing = profile.missing
        self.counts = categorical_counts(profile.counts, profile.other)
        self.present = int(self.counts.sum())
        self.unseen = unseen_rate(profile.counts, profile.other)
        self._error: str | None = None
        self.shares = self.psi_shares = _EMPTY
        try:
            r = _counts(self.counts, "reference counts")
        except ValueError as e:  # raised when a window is judged, as `psi` would
            self._error = str(e)
            return
        self.psi_shares = _psi_shares(r, eps)
        self.shares = _shares(r)

    def drifts(
        self,
        feature: str,
        counts: FloatArray,
        missing: Sequence[int],
        thresholds: Sequence[Mapping[Statistic, float] | None],
    ) -> list[FeatureDrift]:
        """One `FeatureDrift` per row of `counts` (k, categories + 1: `categorical_counts`, the
        `other` bucket last), judged on the row's thresholds (None: not judged)."""
        totals = counts.sum(axis=-1).tolist()
        others = counts[:, -1].tolist()
        ref_rows = self.present + self.missing
        base = []
        for total, cur_missing in zip(totals, missing, strict=True):
            present = int(total)
            rows = present + cur_missing
            base.append(
                (
                    rows,
                    missing_rate(cur_missing, rows),
                    rate_delta(self.missing, ref_rows, cur_missing, rows),
                    _why_not(rows, present, self.present),
                )
            )
        judged = [i for i, b in enumerate(base) if b[3] is None]
        psi_v: list[float | None] = [None] * len(base)
        linf_v: list[float | None] = [None] * len(base)
        unseen_v: list[float | None] = [None] * len(base)
        if judged:
            if self._error is not None:
                raise ValueError(self._error)
            cur = counts if len(judged) == len(base) else counts[judged]
            _check_counts(cur, "current counts")
            if cur.shape[1] != self.counts.size:
                raise ValueError(
                    f"reference has {self.counts.size} bins, current has {cur.shape[1]}"
                )
            psi = _none_if_nan(_psi_against(self.psi_shares, cur, self.eps))
            lin = _none_if_nan(_linf_against(self.shares, cur))
            for j, i in enumerate(judged):
                psi_v[i], linf_v[i] = psi[j], lin[j]
                # `unseen_rate`: the other bucket over every present value
                total = float(totals[i] - others[i]) + others[i]
                unseen_v[i] = others[i] / total if total > 0 else None
        out = []
        for i, (rows, rate, delta, reason) in enumerate(base):
            cur_unseen = unseen_v[i]
            unseen_delta = (
                None if cur_unseen is None or self.unseen is None else cur_unseen - self.unseen
            )
            scores: dict[Statistic, float | None] = {
                "linf": linf_v[i],
                "psi": psi_v[i],
                "unseen": unseen_delta,
                "missing": None if delta is None else abs(delta),
            }
            flagged, decided = _judged(scores, "linf", thresholds[i])
            out.append(
                FeatureDrift(
                    feature=feature,
                    kind="categorical",
                    rows=rows,
                    missing=missing[i],
                    psi=psi_v[i],
                    linf=linf_v[i],
                    missing_rate=rate,
                    missing_delta=delta,
                    unseen_rate=cur_unseen,
                    unseen_delta=unseen_delta,
                    not_judged=reason,
                    flagged=flagged,
                    decided_by=decided,
                )
            )
        return out


_EMPTY: FloatArray = np.zeros(0)
