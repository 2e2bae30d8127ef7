"""CBPE: a classifier's metrics expected from its calibrated probabilities, with the sampling
noise of the window's size, computed from a window's `ScoreCounts` alone.

- accuracy = trace(C) / n, C the expected confusion matrix (rows predicted, columns true);
  standard error sqrt(sum p(1 - p)) / n (the correct predictions are a sum of Bernoullis);
- per class k: precision C[k,k] / sum_j C[k,j], recall C[k,k] / sum_j C[j,k],
  F1 2 C[k,k] / (sum_j C[k,j] + sum_j C[j,k]), and their macro means; standard errors from
  `DRAWS` simulated label sets (per predicted class, true labels multinomial on its row of C);
- ROC AUC (NannyML's method, on fine bins): sorted by the logged score, descending, the expected
  TPR and FPR are cumulative sums of the calibrated P(class) and of 1 - P(class) over their
  totals; the area under that curve (trapezoids; the rows of one bin are ties). More classes:
  the macro mean of one-vs-rest. Standard error by Hanley & McNeil (1982) on the expected
  positive and negative counts.
"""

import numpy as np

from modelloop.monitoring.estimate.aggregate import FloatArray, ScoreCounts

DRAWS = 200
Estimated = tuple[float, float]  # (value, standard error)


def _prf(conf: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision, recall and F1 per class of confusion matrices (..., K, K)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    predicted = conf.sum(axis=-1)
    true = conf.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(predicted + true > 0, 2 * tp / (predicted + true), 0.0)
    return precision, recall, f1


def _auc(rows: FloatArray, positive: FloatArray) -> tuple[float, float] | None:
    pos = positive[::-1]
    neg = np.clip(rows[::-1] - pos, 0.0, None)
    p_total, n_total = float(pos.sum()), float(neg.sum())
    if p_total <= 0 or n_total <= 0:
        return None
    tpr = np.concatenate(([0.0], np.cumsum(pos) / p_total))
    fpr = np.concatenate(([0.0], np.cumsum(neg) / n_total))
    auc = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1])) / 2.0)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (p_total - 1) * (q1 - auc**2) + (n_total - 1) * (q2 - auc**2)) / (
        p_total * n_total
    )
    return auc, float(np.sqrt(max(var, 0.0)))


def estimate(counts: ScoreCounts, classes: list[str], seed: int = 0) -> dict[str, object]:
    """{"metrics": {name: [value, stderr]}, "per_class": {class: {name: [value, stderr]}}}."""
    n = counts.rows
    if n == 0:
        return {"metrics": {}, "per_class": {}, "rows": 0}
    conf = counts.confusion
    metrics: dict[str, Estimated] = {
        "accuracy": (float(np.trace(conf) / n), float(np.sqrt(counts.variance) / n))
    }
    precision, recall, f1 = _prf(conf)
    rng = np.random.default_rng(seed)
    per_predicted = np.rint(conf.sum(axis=1)).astype(np.int64)
    pvals = conf / np.clip(conf.sum(axis=1, keepdims=True), 1e-12, None)
    pvals[per_predicted == 0] = 1.0 / conf.shape[0]
    pvals /= pvals.sum(axis=1, keepdims=True)
    sims = rng.multinomial(per_predicted, pvals, size=(DRAWS, conf.shape[0])).astype(np.float64)
    s_precision, s_recall, s_f1 = _prf(sims)
    for name, value, sim in (
        ("precision_macro", precision, s_precision),
        ("recall_macro", recall, s_recall),
        ("f1_macro", f1, s_f1),
    ):
        metrics[name] = (float(value.mean()), float(sim.mean(axis=1).std()))
    values = np.stack((precision, recall, f1)).tolist()  # (3, K)
    errors = np.stack((s_precision, s_recall, s_f1)).std(axis=1).tolist()  # (3, K)
    per_class = {
        c: {
            name: [values[m][i], errors[m][i]]
            for m, name in enumerate(("precision", "recall", "f1"))
        }
        for i, c in enumerate(classes)
    }
    aucs = [_auc(r, p) for r, p in zip(counts.hist_rows, counts.hist_positive, strict=True)]
    if aucs and all(a is not None for a in aucs):
        values = np.array([a[0] for a in aucs if a is not None])
        ses = np.array([a[1] for a in aucs if a is not None])
        metrics["roc_auc"] = (float(values.mean()), float(np.sqrt(np.sum(ses**2)) / ses.size))
    return {
        "metrics": {k: [v, se] for k, (v, se) in metrics.items()},
        "per_class": per_class,
        "rows": n,
    }
