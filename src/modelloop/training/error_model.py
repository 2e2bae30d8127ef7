"""The regression error model the monitor estimates MAE and RMSE with, without labels (DLE).

An additive ridge model of |residual| and of residual², on one-hot slots of the reference's own
bins (each feature's bins plus missing, categories plus other and missing, and the bins of the
predicted value), and, inside each bin of a numeric feature, a slope on the value's distance
from the bin's centre (the outer bins reach past the training data's tails, where the error
keeps growing: without it a shift into the tails was estimated with the tail's average error,
the MAE ~0.03 low under rows resampled with weight exp(0.5 |x0|)). Its mean over a window is
linear in the window's bin counts and per-bin sums of the values, so the monitor evaluates it
from those aggregates, with numpy only, in microseconds.
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


def centres(ref: ReferenceProfile) -> dict[str, FloatArray]:
    """Each numeric feature's bin centres: the reference's centroids (the training rows' mean
    in the bin)."""
    return {f: np.asarray(p.centroids, dtype=np.float64) for f, p in ref.numeric.items()}


def design(
    frame: pd.DataFrame, predicted: FloatArray, ref: ReferenceProfile
) -> tuple[FloatArray, list[tuple[str, int]], list[tuple[str, int]]]:
    """Per row: the one-hot slots, then for each numeric feature its within-bin column per bin
    (value - the bin's centre in the row's bin, 0 elsewhere; missing rows 0); and each block's
    (name, width) in order, for the slots and for the within-bin columns."""
    blocks: list[tuple[str, npt.NDArray[np.int64], int]] = []
    within: list[tuple[str, FloatArray]] = []
    cs = centres(ref)
    for name, prof in ref.numeric.items():
        values = frame[name].to_numpy(dtype=np.float64)
        slots = _numeric_slots(values, prof.edges)
        blocks.append((name, slots, len(prof.edges) + 2))
        col = np.zeros((len(frame), len(prof.edges) + 1), dtype=np.float64)
        ok = np.isfinite(values)
        rows_ok = np.flatnonzero(ok)
        col[rows_ok, slots[ok]] = values[ok] - cs[name][slots[ok]]
        within.append((name, col))
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
    return (
        np.hstack([x, *(c for _, c in within)]),
        [(name, w) for name, _, w in blocks],
        [(name, c.shape[1]) for name, c in within],
    )


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
    x, layout, within = design(frame, predicted, ref)
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
    slots = sum(w for _, w in layout)
    abs_coef = np.asarray(abs_model.coef_, dtype=np.float64)
    sq_coef = np.asarray(sq_model.coef_, dtype=np.float64)
    return ErrorModel(
        abs_intercept=float(abs_model.intercept_),
        sq_intercept=float(sq_model.intercept_),
        abs_terms=_terms(abs_coef[:slots], layout),
        sq_terms=_terms(sq_coef[:slots], layout),
        within_centres={f: c.tolist() for f, c in centres(ref).items()},
        abs_within=_terms(abs_coef[slots:], within),
        sq_within=_terms(sq_coef[slots:], within),
        kurtosis=kurtosis,
        fitted_on=fitted_on,
        test_mae_error=float(np.mean(mae_err)),
        test_rmse_error=float(np.mean(rmse_err)),
    )
