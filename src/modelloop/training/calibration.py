"""Calibration of a classifier's probabilities on held-out data, for the monitor's estimates.

The exported graph is left as trained (its parity with scikit-learn stays exact); the map goes
into the version's metadata and the monitor applies it to the logged probabilities before it
estimates the metrics from them (`monitoring/estimate`).
"""

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from modelloop.store.metadata import CalibrationFigures, CalibrationMap

FloatArray = npt.NDArray[np.float64]
ECE_BINS = 15
MAX_KNOTS = 200  # an isotonic map's steps kept (thinned evenly beyond this)


def expected_calibration_error(proba: FloatArray, true_idx: npt.NDArray[np.int64]) -> float:
    """ECE on 15 equal-width bins of the top-class probability: sum over bins of
    |accuracy - mean confidence| weighted by the bin's share of rows."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == true_idx
    idx = np.minimum((conf * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=ECE_BINS)
    mean_conf = np.bincount(idx, weights=conf, minlength=ECE_BINS)
    return float(np.abs(acc - mean_conf).sum() / max(conf.size, 1))


def brier(proba: FloatArray, true_idx: npt.NDArray[np.int64]) -> float:
    """Mean squared error of the probabilities: of P(class 1) for two classes, summed over the
    classes for more."""
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(true_idx)), true_idx] = 1.0
    if proba.shape[1] == 2:
        return float(np.mean((proba[:, 1] - onehot[:, 1]) ** 2))
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def fit_map(proba: FloatArray, true_idx: npt.NDArray[np.int64]) -> CalibrationMap:
    """Isotonic maps of each class's probability (class 1 only for two classes)."""
    k = proba.shape[1]
    classes = [1] if k == 2 else list(range(k))
    xs, ys = [], []
    for c in classes:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(proba[:, c], (true_idx == c).astype(np.float64))
        x = np.asarray(iso.X_thresholds_, dtype=np.float64)
        y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        if x.size > MAX_KNOTS:
            keep = np.unique(np.linspace(0, x.size - 1, MAX_KNOTS).round().astype(np.int64))
            x, y = x[keep], y[keep]
        xs.append(x.tolist())
        ys.append(y.tolist())
    return CalibrationMap(classes=classes, x=xs, y=ys)


def apply_map(cal: CalibrationMap, proba: FloatArray) -> FloatArray:
    """The calibrated probabilities (numpy only; the monitor's copy is
    `monitoring.estimate.aggregate.calibrate`)."""
    out = np.array(proba, dtype=np.float64)
    for c, x, y in zip(cal.classes, cal.x, cal.y, strict=True):
        out[:, c] = np.interp(proba[:, c], x, y)
    if out.shape[1] == 2:
        out[:, 0] = 1.0 - out[:, 1]
    else:
        out /= np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)
    return out


def calibrate(
    proba: FloatArray, true_idx: npt.NDArray[np.int64], fitted_on: str, seed: int = 0
) -> tuple[CalibrationMap | None, CalibrationFigures]:
    """A map fitted on held-out predictions (`proba`, `true_idx`: rows their model never saw),
    and its figures: ECE and Brier before, and after by two-fold cross-fitting (each half
    calibrated by the map of the other, so no row is judged by a map that saw it). The map is
    kept when it is needed: when it lowers the cross-fitted ECE (NannyML's rule too). The Brier
    score is recorded beside it: isotonic steps fitted on a few thousand rows can raise it a
    little while they remove a bias."""
    order = np.random.default_rng(seed).permutation(len(true_idx))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    after_proba = np.empty_like(proba, dtype=np.float64)
    for fit, judge in (halves, halves[::-1]):
        after_proba[judge] = apply_map(fit_map(proba[fit], true_idx[fit]), proba[judge])
    ece_before = expected_calibration_error(proba, true_idx)
    ece_after = expected_calibration_error(after_proba, true_idx)
    brier_before, brier_after = brier(proba, true_idx), brier(after_proba, true_idx)
    applied = ece_after < ece_before
    figures = CalibrationFigures(
        rows=len(true_idx),
        ece_before=ece_before,
        ece_after=ece_after,
        brier_before=brier_before,
        brier_after=brier_after,
        applied=applied,
        fitted_on=fitted_on,
    )
    return (fit_map(proba, true_idx) if applied else None), figures
