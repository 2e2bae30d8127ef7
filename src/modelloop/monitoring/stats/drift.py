"""A feature's drift statistics, judged against thresholds, and the helpers the prepared
references share."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from modelloop.monitoring.stats.kernels import (
    CATEGORICAL_STATISTICS,
    NUMERIC_STATISTICS,
    FloatArray,
    Kind,
    Statistic,
)

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


# -- helpers of the prepared references (numeric.py, categorical.py) -----------------------


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


def _nan_none(v: float) -> float | None:
    return None if math.isnan(v) else v


_EMPTY: FloatArray = np.zeros(0)
