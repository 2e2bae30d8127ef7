"""Trained versions and their traffic for the estimate tests: the synthetic churn data, a
three-class and a regression data set drawn here (CSV files trained on by the real pipeline),
and covariate shifts that keep P(y | x): moved means, and rows resampled on their features."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelloop.monitoring.estimate.estimator import Estimator
from modelloop.monitoring.window import Folder, Window
from modelloop.store.metadata import ModelMetadata, Task
from modelloop.store.registry import Registry
from modelloop.training.export import OnnxModel


@dataclass
class Served:
    """A published version, run as the service runs it, folded as the monitor folds it."""

    meta: ModelMetadata
    model: OnnxModel
    folder: Folder
    estimator: Estimator

    @classmethod
    def load(cls, registry: Registry, name: str) -> "Served":
        meta = registry.metadata(name, 1)
        ref = registry.reference(name, 1)
        model = OnnxModel.load(registry.onnx_bytes(name, 1), meta.features, meta.task)
        return cls(meta, model, Folder(meta, ref), Estimator(meta))

    def outputs(self, frame: pd.DataFrame) -> tuple[list[dict[str, Any]], np.ndarray, Any]:
        x = frame[self.meta.feature_names].copy()
        for f in self.meta.features:
            if f.kind == "categorical":
                x[f.name] = x[f.name].fillna("").astype(str)
        pred, proba = self.model.predict(x)
        if proba is None:
            return [{"value": float(v)} for v in pred], pred, None
        classes = [str(c) for c in self.meta.classes]
        outs = [
            {"label": str(lb), "probabilities": dict(zip(classes, map(float, p), strict=True))}
            for lb, p in zip(pred, proba, strict=True)
        ]
        return outs, pred, proba

    def window(self, frame: pd.DataFrame) -> tuple[Window, np.ndarray, Any]:
        outs, pred, proba = self.outputs(frame)
        feats = [
            {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
            for rec in frame[self.meta.feature_names].to_dict("records")
        ]
        return self.folder.fold(feats, outs, [0.0] * len(outs)), pred, proba


def resample(frame: pd.DataFrame, weights: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    """n rows drawn with probability proportional to `weights` (a function of x only: the
    labelling rule P(y | x) is kept, a pure covariate shift)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(frame), size=n, replace=True, p=weights / weights.sum())
    return frame.iloc[idx].reset_index(drop=True)


def three_classes(rows: int, seed: int) -> pd.DataFrame:
    """Three classes from a softmax of six features (two of them categorical)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 4))
    color = rng.choice(np.array(["red", "green", "blue"], dtype=object), rows, p=[0.5, 0.3, 0.2])
    size = rng.choice(np.array(["s", "m", "l"], dtype=object), rows)
    logits = np.stack(
        [
            1.2 * x[:, 0] - 0.5 * x[:, 1] + 0.6 * (color == "red"),
            -0.8 * x[:, 0] + 1.0 * x[:, 2] + 0.4 * (size == "l"),
            0.3 * x[:, 1] - 0.9 * x[:, 2] + 0.8 * x[:, 3] + 0.5 * (color == "blue"),
        ],
        axis=1,
    )
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(rows)[:, None]
    label = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return pd.DataFrame(
        {
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "x3": x[:, 3],
            "color": color,
            "size": size,
            "kind": np.array(["alpha", "beta", "gamma"])[np.minimum(label, 2)],
        }
    )


def heteroscedastic(rows: int, seed: int) -> pd.DataFrame:
    """A regression whose noise grows with |x0| (and in one category)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 3))
    site = rng.choice(np.array(["a", "b"], dtype=object), rows, p=[0.7, 0.3])
    noise = (0.5 + np.abs(x[:, 0]) + 1.0 * (site == "b")) * rng.normal(0, 1, rows)
    y = 3 * x[:, 0] + 2 * np.sin(x[:, 1]) + x[:, 2] + noise
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "site": site, "y": y})


def train_csv(
    registry: Registry,
    name: str,
    frame: pd.DataFrame,
    target: str,
    folder: Path,
    estimator: str,
    task: Task,
) -> Served:
    from modelloop.training.pipeline import TrainRequest, run_training

    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    run_training(
        TrainRequest(model=name, data=path, target=target, task=task, estimator=estimator),
        registry,
    )
    return Served.load(registry, name)
