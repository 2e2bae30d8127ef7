"""Evaluate: held-out metrics, and the comparison that decides which model is better."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sklearn import metrics as skm

from modelloop.store.metadata import Label, Task

PRIMARY = {"classification": "accuracy", "regression": "rmse"}
LOWER_IS_BETTER = {"rmse", "mae", "log_loss"}


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float | None]
    confusion_matrix: list[list[int]] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)


def classification(
    y_true: Sequence[Label],
    y_pred: Sequence[Label],
    proba: npt.NDArray[np.floating],
    classes: Sequence[Label],
) -> Evaluation:
    y_true_a, y_pred_a = np.asarray(y_true), np.asarray(y_pred)
    # ONNX gives float32 probabilities; renormalise so rows sum to one in float64.
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
    labels = list(classes)
    p, r, f, support = skm.precision_recall_fscore_support(
        y_true_a, y_pred_a, labels=labels, zero_division=0
    )
    out: dict[str, float | None] = {
        "accuracy": float(skm.accuracy_score(y_true_a, y_pred_a)),
        "precision_macro": float(np.mean(p)),
        "recall_macro": float(np.mean(r)),
        "f1_macro": float(np.mean(f)),
        "roc_auc": None,
        "log_loss": None,
    }
    present = set(y_true_a.tolist())
    if len(present) == len(labels):
        if len(labels) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true_a == labels[1], proba[:, 1]))
        else:
            out["roc_auc"] = float(
                skm.roc_auc_score(y_true_a, proba, multi_class="ovr", labels=labels)
            )
    out["log_loss"] = float(skm.log_loss(y_true_a, np.clip(proba, 1e-15, 1), labels=labels))
    per_class = {
        str(c): {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": float(support[i]),
        }
        for i, c in enumerate(labels)
    }
    cm = skm.confusion_matrix(y_true_a, y_pred_a, labels=labels)
    return Evaluation(out, cm.tolist(), per_class)


def regression(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> Evaluation:
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float).ravel()
    return Evaluation(
        {
            "mae": float(skm.mean_absolute_error(t, p)),
            "rmse": float(np.sqrt(skm.mean_squared_error(t, p))),
            "r2": float(skm.r2_score(t, p)),
        }
    )


def is_better(metric: str, challenger: float, champion: float, margin: float = 0.0) -> bool:
    """True if `challenger` beats `champion` by more than `margin` on `metric`."""
    if metric in LOWER_IS_BETTER:
        return challenger < champion - margin
    return challenger > champion + margin


def format_table(task: Task, ev: Evaluation, classes: Sequence[Label]) -> str:
    """The metrics as a small text table for the terminal."""
    lines = ["metric            value"]
    for k, v in ev.metrics.items():
        lines.append(f"{k:<17} {'n/a' if v is None else f'{v:.4f}'}")
    if task == "classification" and ev.per_class:
        lines.append("")
        lines.append(f"{'class':<17} precision  recall     f1  support")
        for c in classes:
            pc = ev.per_class[str(c)]
            lines.append(
                f"{c!s:<17} {pc['precision']:>9.3f} {pc['recall']:>7.3f} {pc['f1']:>6.3f}"
                f" {int(pc['support']):>8}"
            )
        lines.append("")
        lines.append("confusion matrix (rows: true, columns: predicted)")
        width = max(6, *(len(str(c)) for c in classes))
        lines.append(" " * width + " " + " ".join(f"{c!s:>{width}}" for c in classes))
        for c, row in zip(classes, ev.confusion_matrix, strict=True):
            lines.append(f"{c!s:>{width}} " + " ".join(f"{n:>{width}}" for n in row))
    return "\n".join(lines)
