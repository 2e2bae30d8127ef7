"""One drift check: every feature (and the prediction score) of a window against the reference,
on thresholds above the sampling noise of the window's size."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from modelloop.monitoring.noise import DEFAULT_FLOORS, Levels, NoiseCalibration, calibrate
from modelloop.monitoring.stats import (
    PSI_EPS,
    CategoricalReference,
    FeatureDrift,
    FloatArray,
    NumericGroup,
    NumericReference,
    Statistic,
    count_rows,
)
from modelloop.monitoring.window import IntArray, Window
from modelloop.store.metadata import ReferenceProfile

SCORE = "prediction_score"
INF = float("inf")
PREDICTED = "predicted_label"


def calibrate_reference(ref: ReferenceProfile) -> NoiseCalibration:
    numeric = {**ref.numeric, SCORE: ref.score}
    categorical = dict(ref.categorical)
    if ref.predicted is not None:
        categorical[PREDICTED] = ref.predicted
    return calibrate(numeric, categorical)


@dataclass(frozen=True)
class CheckResult:
    rows: int
    verdict: str  # "drift", "ok" or "not judged"
    flagged: list[str]
    features: list[FeatureDrift]  # judged on the latest window
    merged: list[FeatureDrift]  # judged on the latest windows merged (more rows, less noise)
    thresholds: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "verdict": self.verdict,
            "flagged": self.flagged,
            "features": [_drift_dict(d) for d in self.features],
            "merged": [_drift_dict(d) for d in self.merged],
            "thresholds": self.thresholds,
        }


_FIELDS = [f.name for f in fields(FeatureDrift)]


def _drift_dict(d: FeatureDrift) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(d, name) for name in _FIELDS}
    out["flagged"] = list(d.flagged)
    for k, v in out.items():  # JSON has no infinity: a constant column that moved reads 1e9
        if v == INF:
            out[k] = 1e9
    return out


class PreparedReference:
    """A version's reference profile and noise calibration, with what every check derives from
    them alone computed once: the reference's validated counts, shares and bin positions per
    feature, and the thresholds per window size. Build one per version and pass it to `check`;
    the statistics are the same numbers as without it."""

    _MAX_SIZES = 64  # thresholds kept for this many (size, floors, multiplier); then cleared

    def __init__(
        self, ref: ReferenceProfile, calibration: NoiseCalibration, eps: float = PSI_EPS
    ) -> None:
        self.ref = ref
        self.calibration = calibration
        self.numeric = {f: NumericReference(p, eps) for f, p in ref.numeric.items()}
        self.categorical = {f: CategoricalReference(p, eps) for f, p in ref.categorical.items()}
        self.score = NumericReference(ref.score, eps)
        self.predicted = None if ref.predicted is None else CategoricalReference(ref.predicted, eps)
        self._thresholds: dict[tuple[int, float, tuple[tuple[str, float], ...]], Levels] = {}
        # The numeric features, the prediction score last, each with where a window keeps its
        # counts; those with as many bins as others are scored in groups.
        self.numeric_sources: list[tuple[str, NumericReference, _NumericCounts]] = [
            *((f, r, _numeric_counts(f)) for f, r in self.numeric.items()),
            (SCORE, self.score, _score_counts),
        ]
        by_bins: dict[int, list[int]] = {}
        for i, (_, r, _) in enumerate(self.numeric_sources):
            if r.groupable:
                by_bins.setdefault(r.counts.size, []).append(i)
        self.groups = [
            (members, NumericGroup([self.numeric_sources[i][1] for i in members]))
            for members in by_bins.values()
            if len(members) > 1
        ]
        grouped = {i for members, _ in self.groups for i in members}
        self.singles = [i for i in range(len(self.numeric_sources)) if i not in grouped]

    def thresholds(self, n: int, floors: dict[Statistic, float], multiplier: float) -> Levels:
        """`calibration.thresholds_at(n, ...)`, remembered (callers must not change it)."""
        key = (n, multiplier, tuple(sorted(floors.items())))
        found = self._thresholds.get(key)
        if found is None:
            if len(self._thresholds) >= self._MAX_SIZES:
                self._thresholds.clear()
            found = self.calibration.thresholds_at(n, floors=floors, multiplier=multiplier)
            self._thresholds[key] = found
        return found


_NumericCounts = Callable[[Window], tuple[IntArray, int]]


def _numeric_counts(feature: str) -> _NumericCounts:
    return lambda w: w.numeric[feature]


def _score_counts(w: Window) -> tuple[IntArray, int]:
    return w.score


def _categorical_rows(cols: Sequence[tuple[IntArray, int, int]]) -> FloatArray:
    """`categorical_counts` of several windows, one row each."""
    counts = np.array([c for c, _, _ in cols], dtype=np.float64)
    others = np.array([o for _, o, _ in cols], dtype=np.float64)
    return np.concatenate((counts, others[:, None]), axis=1)


def _features(
    prepared: PreparedReference, windows: Sequence[Window], levels: Sequence[Levels]
) -> list[list[FeatureDrift]]:
    """Every feature's statistics in each window, judged on that window's thresholds; the
    windows are scored together, one row each (and numeric features in groups)."""
    sources = prepared.numeric_sources
    numeric: list[list[FeatureDrift]] = [[] for _ in sources]  # per source, per window
    for members, group in prepared.groups:
        cols = [[sources[i][2](w) for w in windows] for i in members]
        counts = count_rows([[c for c, _ in col] for col in cols], ndim=3)
        names = [sources[i][0] for i in members]
        scored = group.drifts(
            names,
            counts,
            [[m for _, m in col] for col in cols],
            [[lv.get(f, {}) for lv in levels] for f in names],
        )
        for i, d in zip(members, scored, strict=True):
            numeric[i] = d
    for i in prepared.singles:
        f, num, counts_of = sources[i]
        col = [counts_of(w) for w in windows]
        rows = count_rows([c for c, _ in col])
        numeric[i] = num.drifts(f, rows, [m for _, m in col], [lv.get(f, {}) for lv in levels])

    out: list[list[FeatureDrift]] = [[] for _ in windows]

    def add(drifts: list[FeatureDrift], which: Sequence[int]) -> None:
        for i, d in zip(which, drifts, strict=True):
            out[i].append(d)

    every = range(len(windows))
    for drifts in numeric[:-1]:
        add(drifts, every)
    for f, cat in prepared.categorical.items():
        ccols = [w.categorical[f] for w in windows]
        rows = _categorical_rows(ccols)
        add(cat.drifts(f, rows, [m for *_, m in ccols], [lv.get(f, {}) for lv in levels]), every)
    add(numeric[-1], every)  # the prediction score
    if prepared.predicted is not None:
        which = [i for i, w in enumerate(windows) if w.predicted is not None]
        predicted = [p for w in windows if (p := w.predicted) is not None]
        if which:
            rows = _categorical_rows(predicted)
            missing = [m for *_, m in predicted]
            thresholds = [levels[i].get(PREDICTED, {}) for i in which]
            add(prepared.predicted.drifts(PREDICTED, rows, missing, thresholds), which)
    return out


def check(
    windows: Sequence[Window],
    ref: ReferenceProfile,
    calibration: NoiseCalibration,
    multiplier: float,
    floors: dict[Statistic, float] | None = None,
    *,
    prepared: PreparedReference | None = None,
) -> CheckResult:
    """Judge the last window, and the last windows merged; a feature drifts if either flags.

    `prepared`: the `PreparedReference` of `ref` and `calibration`, to reuse across checks."""
    if prepared is None:
        prepared = PreparedReference(ref, calibration)
    elif prepared.ref is not ref or prepared.calibration is not calibration:
        raise ValueError("the prepared reference is of another reference or calibration")
    latest = windows[-1]
    floors = floors or dict(DEFAULT_FLOORS)
    thresholds = prepared.thresholds(max(latest.rows, 1), floors, multiplier)
    scored, levels = [latest], [thresholds]
    if len(windows) > 1:
        merged = windows[0]
        for w in windows[1:]:
            merged = merged.merge(w)
        scored.append(merged)
        levels.append(prepared.thresholds(max(merged.rows, 1), floors, multiplier))
    judged, *rest = _features(prepared, scored, levels)
    merged_judged = rest[0] if rest else []
    flagged = sorted({d.feature for d in [*judged, *merged_judged] if d.drifted})
    any_judged = any(d.judged for d in judged)
    verdict = "drift" if flagged else ("ok" if any_judged else "not judged")
    return CheckResult(
        rows=latest.rows,
        verdict=verdict,
        flagged=flagged,
        features=judged,
        merged=merged_judged,
        thresholds={f: {s: float(v) for s, v in st.items()} for f, st in thresholds.items()},
    )
