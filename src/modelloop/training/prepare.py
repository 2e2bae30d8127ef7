"""Prepare: seeded splits and the preprocessing that goes into the exported graph."""

from dataclasses import dataclass

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelloop.store.metadata import Feature, Task

MISSING_CATEGORY = "__missing__"


@dataclass(frozen=True)
class Splits:
    x_train: pd.DataFrame
    y_train: pd.Series
    x_val: pd.DataFrame
    y_val: pd.Series
    x_test: pd.DataFrame
    y_test: pd.Series
    stratified: bool


def split(
    x: pd.DataFrame,
    y: pd.Series,
    task: Task,
    seed: int,
    validation: float = 0.2,
    test: float = 0.2,
) -> Splits:
    """Train / validation / test, stratified on the class where every class can be."""
    stratify = task == "classification" and int(y.value_counts().min()) >= 3
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test, random_state=seed, stratify=y if stratify else None
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=validation / (1 - test),
        random_state=seed,
        stratify=y_rest if stratify else None,
    )
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, stratify)


def preprocessor(features: list[Feature], scale: bool) -> ColumnTransformer:
    """Numeric: median impute (then standardise if the estimator needs it).
    Categorical: missing ("") becomes its own category, then one-hot, unknowns ignored."""
    numeric = [f.name for f in features if f.kind == "numeric"]
    categorical = [f.name for f in features if f.kind == "categorical"]
    steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        steps.append(("scale", StandardScaler()))
    parts: list[tuple[str, object, list[str]]] = []
    if numeric:
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                missing_values="",
                                strategy="constant",
                                fill_value=MISSING_CATEGORY,
                            ),
                        ),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
