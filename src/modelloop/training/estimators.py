"""The estimators we train, their small hyperparameter grids, and whether they need scaling."""

from dataclasses import dataclass
from typing import Any

from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from modelloop.store.metadata import Task
from modelloop.training.errors import ConfigError

CLASSIFIERS = ("logreg", "random_forest", "hist_gradient_boosting")
REGRESSORS = ("linear", "random_forest", "hist_gradient_boosting")
DEFAULT_ESTIMATOR = "hist_gradient_boosting"


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    needs_scaling: bool
    grid: list[dict[str, Any]]

    def build(self, task: Task, seed: int, params: dict[str, Any]) -> Any:
        if task == "classification":
            if self.name == "logreg":
                return LogisticRegression(max_iter=2000, random_state=seed, **params)
            if self.name == "random_forest":
                return RandomForestClassifier(random_state=seed, n_jobs=1, **params)
            return HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
        if self.name == "linear":
            return Ridge(**params)
        if self.name == "random_forest":
            return RandomForestRegressor(random_state=seed, n_jobs=1, **params)
        return HistGradientBoostingRegressor(random_state=seed, early_stopping=False, **params)


_SPECS = {
    "logreg": EstimatorSpec("logreg", True, [{"C": c} for c in (0.1, 1.0, 10.0)]),
    "linear": EstimatorSpec("linear", True, [{"alpha": a} for a in (0.1, 1.0, 10.0)]),
    "random_forest": EstimatorSpec(
        "random_forest",
        False,
        [
            {"n_estimators": 100, "max_depth": d, "min_samples_leaf": leaf}
            for d in (8, 16)
            for leaf in (1, 5)
        ],
    ),
    "hist_gradient_boosting": EstimatorSpec(
        "hist_gradient_boosting",
        False,
        [
            {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 15},
            {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31},
            {"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 31},
        ],
    ),
}


def estimator_spec(name: str, task: Task) -> EstimatorSpec:
    allowed = CLASSIFIERS if task == "classification" else REGRESSORS
    if name not in allowed:
        raise ConfigError(
            f"estimator {name!r} does not fit a {task} task; use one of {', '.join(allowed)}"
        )
    return _SPECS[name]
