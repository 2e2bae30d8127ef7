"""A numeric feature's reference prepared for many windows (alone, or in a group of features
with as many bins)."""

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from modelloop.monitoring.stats.drift import (
    _EMPTY,
    FeatureDrift,
    _judged,
    _nan_none,
    _none_if_nan,
    _why_not,
)
from modelloop.monitoring.stats.kernels import (
    PSI_EPS,
    FloatArray,
    Statistic,
    _counts,
    _psi_against,
    _psi_shares,
    _shares,
    _w1_raw,
    _wasserstein_against,
    bin_positions,
    missing_rate,
    rate_delta,
)
from modelloop.store.metadata import NumericProfile

# -- a reference prepared for many windows ---------------------------------------------------
#
# A version's reference does not change between windows: its validated counts, bin positions,
# shares and cumulative shares are computed once here, and each window's statistics are the
# vectorised kernels' per-window half (`_psi_against`, ...), the same operations in the same
# order as `psi_rows` & co., so the numbers are identical. Several windows (the latest and the
# merged one) are scored together, one row each.


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
