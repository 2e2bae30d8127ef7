"""DLE: a regression's MAE and RMSE expected from the version's error model, evaluated on a
window's bin counts (the model is additive in the reference's bins, so its mean over the rows
is a dot product with the counts).

- MAE = a0 + (sum_f c_f . n_f + sum_f d_f . (s_f - m_f * n_f)) / n, c_f the |error|
  coefficients of feature f's slots and n_f the window's counts in them; d_f the slopes inside
  a numeric feature's bins, s_f the window's sums of the values per bin and m_f the bins'
  centres; standard error sqrt(MSE - MAE^2) / sqrt(n);
- MSE likewise with the squared-error coefficients, RMSE = sqrt(MSE); standard error by the
  delta method, sqrt((kurtosis - 1) / n) * MSE / (2 RMSE), the kurtosis measured at training.
"""

import numpy as np

from modelloop.monitoring.estimate.aggregate import FloatArray
from modelloop.monitoring.window import Window
from modelloop.store.metadata import ErrorModel

SCORE = "prediction_score"


class PreparedErrorModel:
    def __init__(self, model: ErrorModel) -> None:
        self.model = model
        self.abs_terms = {f: np.asarray(v, dtype=np.float64) for f, v in model.abs_terms.items()}
        self.sq_terms = {f: np.asarray(v, dtype=np.float64) for f, v in model.sq_terms.items()}
        self.centres = {f: np.asarray(v, dtype=np.float64) for f, v in model.within_centres.items()}
        self.abs_within = {f: np.asarray(v, dtype=np.float64) for f, v in model.abs_within.items()}
        self.sq_within = {f: np.asarray(v, dtype=np.float64) for f, v in model.sq_within.items()}

    def _within(self, window: Window) -> tuple[float, float]:
        """The within-bin terms' sums (0 for a window folded without the sums)."""
        abs_sum = sq_sum = 0.0
        for f, centre in self.centres.items():
            sums = window.sums.get(f)
            if sums is None or f not in window.numeric:
                continue
            dev = sums - centre * window.numeric[f][0]
            abs_sum += float(self.abs_within[f] @ dev)
            sq_sum += float(self.sq_within[f] @ dev)
        return abs_sum, sq_sum

    def _slots(self, window: Window) -> dict[str, FloatArray]:
        out: dict[str, FloatArray] = {}
        for f, (counts, missing) in window.numeric.items():
            out[f] = np.append(counts, missing).astype(np.float64)
        for f, (counts, other, missing) in window.categorical.items():
            out[f] = np.append(counts, (other, missing)).astype(np.float64)
        out[SCORE] = np.append(window.score[0], window.score[1]).astype(np.float64)
        return out

    def estimate(self, window: Window) -> dict[str, object]:
        n = window.rows
        if n == 0:
            return {"metrics": {}, "per_class": {}, "rows": 0}
        slots = self._slots(window)
        m = self.model
        abs_sum = sum(float(t @ slots[f]) for f, t in self.abs_terms.items() if f in slots)
        sq_sum = sum(float(t @ slots[f]) for f, t in self.sq_terms.items() if f in slots)
        abs_in, sq_in = self._within(window)
        abs_sum += abs_in
        sq_sum += sq_in
        mae = max(m.abs_intercept + abs_sum / n, 0.0)
        mse = max(m.sq_intercept + sq_sum / n, 0.0)
        rmse = float(np.sqrt(mse))
        mae_se = float(np.sqrt(max(mse - mae**2, 0.0) / n))
        rmse_se = (
            float(np.sqrt(max(m.kurtosis - 1.0, 0.0) / n) * mse / (2 * rmse)) if rmse > 0 else 0.0
        )
        return {
            "metrics": {"mae": [mae, mae_se], "rmse": [rmse, rmse_se]},
            "per_class": {},
            "rows": n,
        }
