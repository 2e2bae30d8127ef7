"""The estimate of one version: which method its metadata ships for, applied to windows."""

from typing import Any

from modelloop.monitoring.estimate import cbpe
from modelloop.monitoring.estimate.dle import PreparedErrorModel
from modelloop.monitoring.window import Window
from modelloop.store.metadata import ModelMetadata


class Estimator:
    """Built once per version; `estimate(window)` costs microseconds (no row is revisited).
    A classifier's window carries its `ScoreCounts` (folded by `window.Folder`)."""

    def __init__(self, meta: ModelMetadata) -> None:
        self.classes = [str(c) for c in meta.classes]
        self.method: str | None = None
        self.errors: PreparedErrorModel | None = None
        est = meta.estimation
        if est is None:
            return
        if meta.task == "classification" and est.auc_edges:
            self.method = "cbpe"
        elif meta.task == "regression" and est.error_model is not None:
            self.errors = PreparedErrorModel(est.error_model)
            self.method = "dle"

    def estimate(self, window: Window) -> dict[str, Any] | None:
        if self.method == "cbpe":
            if window.scores is None:
                return None
            return {"method": "cbpe", **cbpe.estimate(window.scores, self.classes)}
        if self.errors is not None:
            return {"method": "dle", **self.errors.estimate(window)}
        return None
