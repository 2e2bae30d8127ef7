"""What a version ships for the monitor's label-free estimates: the calibration map and the
fine score bins of a classifier (CBPE), or the error model of a regression (DLE)."""

from typing import Any

import numpy as np
import pandas as pd

from modelloop.store.metadata import Estimation, ReferenceProfile
from modelloop.training.calibration import calibrate
from modelloop.training.error_model import fit_error_model
from modelloop.training.prepare import Splits

AUC_BINS = 200  # quantile bins of each scored class's probability, for the estimated ROC AUC
ERRORS_ON = "the test split's residuals of the served model (figures: two-fold cross-fitted)"
CALIBRATED_ON = (
    "the test split predicted by the served model, and the validation split predicted by the "
    "model fitted on the training split only (figures: two-fold cross-fitted on them)"
)


def _true_index(y: pd.Series, classes: list[Any]) -> np.ndarray:
    index = {str(c): i for i, c in enumerate(classes)}
    return np.array([index[str(v)] for v in y], dtype=np.int64)


def auc_edges(proba: np.ndarray, bins: int = AUC_BINS) -> list[list[float]]:
    """Quantile edges of each scored class's probability (class 1 only for two classes)."""
    scored = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    out = []
    for c in scored:
        qs = np.unique(np.quantile(proba[:, c], np.linspace(0, 1, bins + 1)[1:-1]))
        out.append(qs[qs > proba[:, c].min()].tolist())
    return out


def build_estimation(
    pipeline: Any,
    held_out: Any,
    splits: Splits,
    x_fit: pd.DataFrame,
    reference: ReferenceProfile,
) -> Estimation:
    """`pipeline` is the served model, `held_out` the same parameters fitted on the training
    split only. The calibration map is fitted on predictions of rows their model never saw: the
    served model's test split and `held_out`'s validation split (twice the rows of either, which
    matters where the scores crowd: near the boundary, at 4,000 rows, the map's noise alone moved
    the estimated accuracy by ~0.02). The error model is fitted on the served model's test-split
    residuals only: `held_out`, trained on fewer rows, errs more, and its residuals made the
    estimated MAE ~3 % high."""
    if hasattr(pipeline, "predict_proba"):
        classes = pipeline.classes_.tolist()
        cal, figures = calibrate(
            np.concatenate(
                [
                    np.asarray(pipeline.predict_proba(splits.x_test), dtype=np.float64),
                    np.asarray(held_out.predict_proba(splits.x_val), dtype=np.float64),
                ]
            ),
            np.concatenate(
                [_true_index(splits.y_test, classes), _true_index(splits.y_val, classes)]
            ),
            CALIBRATED_ON,
        )
        edges = auc_edges(np.asarray(pipeline.predict_proba(x_fit), dtype=np.float64))
        return Estimation(calibration=cal, calibration_figures=figures, auc_edges=edges)
    error_model = fit_error_model(
        splits.x_test,
        np.asarray(pipeline.predict(splits.x_test), dtype=np.float64).ravel(),
        splits.y_test.to_numpy(dtype=np.float64),
        reference,
        ERRORS_ON,
    )
    return Estimation(error_model=error_model)
