"""Live performance from feedback joined to logged predictions (numpy only)."""

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification(pairs: Sequence[tuple[Any, Any]]) -> dict[str, float]:
    """Accuracy and macro F1 of (predicted, true) label pairs."""
    pred = np.array([str(p) for p, _ in pairs])
    true = np.array([str(t) for _, t in pairs])
    if pred.size == 0:
        return {}
    f1s = []
    for c in np.union1d(pred, true):
        tp = float(np.sum((pred == c) & (true == c)))
        fp = float(np.sum((pred == c) & (true != c)))
        fn = float(np.sum((pred != c) & (true == c)))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(pred == true)), "f1_macro": float(np.mean(f1s))}


def regression(pairs: Sequence[tuple[Any, Any]]) -> dict[str, float]:
    values = [
        (float(p), float(t))
        for p, t in pairs
        if isinstance(p, int | float) and isinstance(t, int | float)
    ]
    if not values:
        return {}
    arr = np.asarray(values)
    err = arr[:, 0] - arr[:, 1]
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def live_metrics(task: str, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """`rows` from PredictionLog.labelled: output (as logged) and label (feedback)."""
    if task == "classification":
        return classification([(r["output"].get("label"), r["label"]) for r in rows])
    return regression([(r["output"].get("value"), r["label"]) for r in rows])
