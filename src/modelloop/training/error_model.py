"""The regression error model the monitor estimates MAE and RMSE with, without labels (DLE).

An additive ridge model of |residual| and of residual², on one-hot slots of the reference's own
bins (each feature's bins plus missing, categories plus other and missing, and the bins of the
predicted value). Its mean over a window is linear in the window's bin counts, so the monitor
evaluates it from the counts it already keeps, with numpy only, in microseconds.
"""

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.linear_model import Ridge

from modelloop.store.metadata import ErrorModel, ReferenceProfile

FloatArray = npt.NDArray[np.float64]
SCORE = "prediction_score"  # the monitor's name for the predicted value's bins
ALPHA = 1.0


def _numeric_slots(values: FloatArray, edges: list[float]) -> npt.NDArray[np.int64]:
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.where(np.isnan(values), len(edges) + 1, idx).astype(np.int64)


def _categorical_slots(values: pd.Series, categories: list[str]) -> npt.NDArray[np.int64]:
    index = {c: i for i, c in enumerate(categories)}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        if v is None or v == "" or (isinstance(v, float) and v != v):
            out[i] = len(categories) + 1
        else:
            out[i] = index.get(str(v), len(categories))
    return out


def design(
    frame: pd.DataFrame, predicted: FloatArray, ref: ReferenceProfile
) -> tuple[FloatArray, list[tuple[str, int]]]:
    """One-hot slots of every row, and each block's (name, width) in order."""
    blocks: list[tuple[str, npt.NDArray[np.int64], int]] = []
    for name, prof in ref.numeric.items():
        values = frame[name].to_numpy(dtype=np.float64)
        blocks.append((name, _numeric_slots(values, prof.edges), len(prof.edges) + 2))
    for name, cprof in ref.categorical.items():
        slots = _categorical_slots(frame[name], cprof.categories)
        blocks.append((name, slots, len(cprof.categories) + 2))
    blocks.append((SCORE, _numeric_slots(predicted, ref.score.edges), len(ref.score.edges) + 2))
    width = sum(w for *_, w in blocks)
    x = np.zeros((len(frame), width), dtype=np.float64)
    at = 0
    rows = np.arange(len(frame))
    for _, slots, w in blocks:
        x[rows, at + slots] = 1.0
        at += w
    return x, [(name, w) for name, _, w in blocks]


def _terms(coef: FloatArray, layout: list[tuple[str, int]]) -> dict[str, list[float]]:
    out, at = {}, 0
    for name, w in layout:
        out[name] = coef[at : at + w].tolist()
        at += w
    return out


def _fit(x: FloatArray, resid: FloatArray) -> tuple[Ridge, Ridge]:
    return Ridge(alpha=ALPHA).fit(x, np.abs(resid)), Ridge(alpha=ALPHA).fit(x, resid**2)


def fit_error_model(
    frame: pd.DataFrame,
    predicted: FloatArray,
    true: FloatArray,
    ref: ReferenceProfile,
    fitted_on: str,
    seed: int = 0,
) -> ErrorModel:
    """Fit on held-out residuals of the served model (rows it never saw). The error of the
    estimate on them (`test_*_error`) is two-fold cross-fitted: each half's MAE and RMSE
    estimated by the model fitted on the other half."""
    x, layout = design(frame, predicted, ref)
    resid = true - predicted
    abs_model, sq_model = _fit(x, resid)
    mse = float(np.mean(resid**2))
    kurtosis = float(np.mean(resid**4) / mse**2) if mse > 0 else 3.0
    order = np.random.default_rng(seed).permutation(len(resid))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    mae_err, rmse_err = [], []
    for fit, judge in (halves, halves[::-1]):
        a, q = _fit(x[fit], resid[fit])
        est_mae = float(np.mean(a.predict(x[judge])))
        est_rmse = float(np.sqrt(max(float(np.mean(q.predict(x[judge]))), 0.0)))
        mae_err.append(est_mae - float(np.mean(np.abs(resid[judge]))))
        rmse_err.append(est_rmse - float(np.sqrt(np.mean(resid[judge] ** 2))))
    return ErrorModel(
        abs_intercept=float(abs_model.intercept_),
        sq_intercept=float(sq_model.intercept_),
        abs_terms=_terms(np.asarray(abs_model.coef_, dtype=np.float64), layout),
        sq_terms=_terms(np.asarray(sq_model.coef_, dtype=np.float64), layout),
        kurtosis=kurtosis,
        fitted_on=fitted_on,
        test_mae_error=float(np.mean(mae_err)),
        test_rmse_error=float(np.mean(rmse_err)),
    )
