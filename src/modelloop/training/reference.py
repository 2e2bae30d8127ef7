"""The reference profile of the training data that the monitor judges traffic against."""

from typing import Any

import numpy as np
import pandas as pd

from modelloop.store.metadata import Feature, ReferenceProfile, Task
from modelloop.store.profile import categorical_profile, numeric_profile


def score_of(proba: np.ndarray) -> np.ndarray:
    """One number per row: P(class 1) for two classes, the top probability for more."""
    return proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)


def build_reference(
    pipeline: Any, frame: pd.DataFrame, target: pd.Series, features: list[Feature], task: Task
) -> ReferenceProfile:
    numeric = {
        f.name: numeric_profile(frame[f.name].to_numpy(dtype=np.float64))
        for f in features
        if f.kind == "numeric"
    }
    categorical = {
        f.name: categorical_profile(frame[f.name].tolist())
        for f in features
        if f.kind == "categorical"
    }
    if task == "classification":
        score = score_of(np.asarray(pipeline.predict_proba(frame), dtype=np.float64))
        predicted = categorical_profile([str(v) for v in pipeline.predict(frame)])
        return ReferenceProfile(
            rows=len(frame),
            numeric=numeric,
            categorical=categorical,
            score=numeric_profile(score),
            predicted=predicted,
            labels=categorical_profile([str(v) for v in target]),
        )
    values = np.asarray(pipeline.predict(frame), dtype=np.float64).ravel()
    return ReferenceProfile(
        rows=len(frame),
        numeric=numeric,
        categorical=categorical,
        score=numeric_profile(values),
        label_values=numeric_profile(target.to_numpy(float)),
    )
