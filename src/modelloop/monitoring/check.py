"""One drift check: every feature (and the prediction score) of a window against the reference,
on thresholds above the sampling noise of the window's size."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from modelloop.monitoring.noise import DEFAULT_FLOORS, NoiseCalibration, calibrate
from modelloop.monitoring.stats import (
    FeatureDrift,
    Statistic,
    categorical_drift,
    judge,
    numeric_drift,
)
from modelloop.monitoring.window import Window
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


def _features(window: Window, ref: ReferenceProfile) -> list[FeatureDrift]:
    out = [numeric_drift(f, ref.numeric[f], *window.numeric[f]) for f in ref.numeric]
    out += [
        categorical_drift(f, ref.categorical[f], *window.categorical[f]) for f in ref.categorical
    ]
    out.append(numeric_drift(SCORE, ref.score, *window.score))
    if ref.predicted is not None and window.predicted is not None:
        out.append(categorical_drift(PREDICTED, ref.predicted, *window.predicted))
    return out


def check(
    windows: Sequence[Window],
    ref: ReferenceProfile,
    calibration: NoiseCalibration,
    multiplier: float,
    floors: dict[Statistic, float] | None = None,
) -> CheckResult:
    """Judge the last window, and the last windows merged; a feature drifts if either flags."""
    latest = windows[-1]
    floors = floors or dict(DEFAULT_FLOORS)
    thresholds = calibration.thresholds_at(
        max(latest.rows, 1), floors=floors, multiplier=multiplier
    )
    judged = [judge(d, thresholds.get(d.feature, {})) for d in _features(latest, ref)]
    merged_judged: list[FeatureDrift] = []
    if len(windows) > 1:
        merged = windows[0]
        for w in windows[1:]:
            merged = merged.merge(w)
        mt = calibration.thresholds_at(max(merged.rows, 1), floors=floors, multiplier=multiplier)
        merged_judged = [judge(d, mt.get(d.feature, {})) for d in _features(merged, ref)]
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
