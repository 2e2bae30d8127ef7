"""What a version ships for the monitor's label-free estimates: the calibration map and the
fine score bins of a classifier (CBPE), or the error model of a regression (DLE)."""

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold

from modelloop.store.metadata import Estimation, ReferenceProfile
from modelloop.training.calibration import calibrate
from modelloop.training.error_model import fit_error_model
from modelloop.training.prepare import Splits

ERRORS_ON_TEST = "the test split's residuals of the served model (figures: two-fold cross-fitted)"
CALIBRATED_ON_SPLITS = (
    "the test split predicted by the served model, and the validation split predicted by the "
    "model fitted on the training split only (figures: two-fold cross-fitted on them)"
)
AUC_BINS = 200  # quantile bins of each scored class's probability, for the estimated ROC AUC
ERROR_FOLDS = 5  # each fold's model fits 4/5 of the rows: as many as the served model's
ERRORS_ON = (
    "out-of-fold residuals on every split (5 folds, each model the served one's parameters "
    "fitted on the other 4/5: as many rows as the served model's); figures: two-fold "
    "cross-fitted on them"
)
CALIBRATED_ON = (
    "out-of-fold predictions on every split (5 folds, each model the served one's parameters "
    "fitted on the other 4/5: as many rows as the served model's); figures: two-fold "
    "cross-fitted on them"
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


def cross_fitted(
    pipeline: Any, splits: Splits, folds: int = ERROR_FOLDS, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Rows and labels of every split, each row predicted (probabilities of the served model's
    classes, or values) by the served model's parameters fitted on the other folds. With the
    default 20 % test split and 5 folds each model fits as many rows as the served one (train +
    validation), so its errors are the served model's in kind, on five times the test split's
    rows."""
    x = pd.concat([splits.x_train, splits.x_val, splits.x_test])
    y = pd.concat([splits.y_train, splits.y_val, splits.y_test])
    classes = list(pipeline.classes_) if hasattr(pipeline, "predict_proba") else None
    out = np.zeros((len(x), len(classes)) if classes else len(x), dtype=np.float64)
    for fit, judge in KFold(folds, shuffle=True, random_state=seed).split(x):
        model = clone(pipeline).fit(x.iloc[fit], y.iloc[fit])
        if classes is None:
            out[judge] = np.asarray(model.predict(x.iloc[judge]), dtype=np.float64).ravel()
            continue
        proba = np.asarray(model.predict_proba(x.iloc[judge]), dtype=np.float64)
        cols = [classes.index(c) for c in model.classes_]  # a fold may miss a rare class
        out[np.ix_(judge, cols)] = proba
    return x, y, out


def cross_fitted_residuals(
    pipeline: Any, splits: Splits, folds: int = ERROR_FOLDS, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A regression's rows, out-of-fold predictions and labels (`cross_fitted`): the 4,000 test
    residuals alone were ~0.016 below their expected mean |error| on the bench's regression,
    and every window's estimated MAE inherited it."""
    x, y, predicted = cross_fitted(pipeline, splits, folds, seed)
    return x, predicted, y.to_numpy(dtype=np.float64)


def build_estimation(
    pipeline: Any,
    held_out: Any,
    splits: Splits,
    x_fit: pd.DataFrame,
    reference: ReferenceProfile,
    out_of_fold: bool = True,
) -> Estimation:
    """`pipeline` is the served model, `held_out` the same parameters fitted on the training
    split only. The calibration map and the error model are fitted on out-of-fold predictions
    of every split by models fitted on as many rows as the served one (`cross_fitted`).
    `held_out`, trained on fewer rows, errs more and is calibrated otherwise: the former map
    (the served model's test split and `held_out`'s validation split) read the accuracy near
    the churn boundary ~0.02 higher than a map of the served model's own predictions (+0.014
    against the realized over 12 windows), and `held_out`'s residuals made the estimated MAE
    ~3 % high. On the test split alone (4,000 rows) the map's own noise moves the estimated
    accuracy near the boundary by up to ~0.02; out of fold it has 20,000 rows.

    `out_of_fold=False` (a retrain, whose served model is fitted with sample weights the folds
    would not reproduce): the former rule, the test split and `held_out`'s validation split for
    the map, the test split's residuals for the error model."""
    if hasattr(pipeline, "predict_proba"):
        classes = pipeline.classes_.tolist()
        if out_of_fold:
            _, labels, proba = cross_fitted(pipeline, splits)
            true_idx, fitted_on = _true_index(labels, classes), CALIBRATED_ON
        else:
            proba = np.concatenate(
                [
                    np.asarray(pipeline.predict_proba(splits.x_test), dtype=np.float64),
                    np.asarray(held_out.predict_proba(splits.x_val), dtype=np.float64),
                ]
            )
            true_idx = np.concatenate(
                [_true_index(splits.y_test, classes), _true_index(splits.y_val, classes)]
            )
            fitted_on = CALIBRATED_ON_SPLITS
        cal, figures = calibrate(proba, true_idx, fitted_on)
        edges = auc_edges(np.asarray(pipeline.predict_proba(x_fit), dtype=np.float64))
        return Estimation(calibration=cal, calibration_figures=figures, auc_edges=edges)
    if out_of_fold:
        x, predicted, y = cross_fitted_residuals(pipeline, splits)
        error_model = fit_error_model(x, predicted, y, reference, ERRORS_ON)
    else:
        error_model = fit_error_model(
            splits.x_test,
            np.asarray(pipeline.predict(splits.x_test), dtype=np.float64).ravel(),
            splits.y_test.to_numpy(dtype=np.float64),
            reference,
            ERRORS_ON_TEST,
        )
    return Estimation(error_model=error_model)
