"""A loaded version ready to predict: graph inputs built from columns, outputs as JSON-ready."""

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelloop.service.inputs import InputSchema
from modelloop.service.loading import LoadedVersion
from modelloop.service.metrics import ServiceMetrics


class ScoringFailed(Exception):
    """ONNX Runtime refused to score these rows (its errors are untyped, so any error of the
    run is this one, with the first line of the runtime's message)."""


@dataclass
class Outputs:
    """Predictions for a run of rows: labels and probabilities, or values."""

    labels: list[Any]
    probabilities: list[list[float]] | None

    def slice(self, start: int, stop: int) -> "Outputs":
        return Outputs(
            self.labels[start:stop],
            None if self.probabilities is None else self.probabilities[start:stop],
        )


class ServedModel:
    def __init__(self, loaded: LoadedVersion, metrics: ServiceMetrics) -> None:
        self.loaded = loaded
        meta = loaded.metadata
        self.name = meta.name
        self.version = meta.version
        self.version_label = str(meta.version)
        self.metadata = meta
        self.schema = InputSchema(meta)
        self.classification = meta.task == "classification"
        self.class_keys = [str(c) for c in meta.classes]
        self._session = loaded.session
        self._inputs = [
            (name, num) for name, num in zip(self.schema.names, self.schema.numeric, strict=True)
        ]
        self._inference = metrics.inference_seconds.labels(meta.name)
        self._batch = metrics.batch_rows.labels(meta.name)
        self._predictions = metrics.predictions.labels(meta.name, self.version_label)

    def feeds(self, columns: list[list[Any]]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for (name, numeric), col in zip(self._inputs, columns, strict=True):
            if numeric:
                out[name] = np.array(col, dtype=np.float32).reshape(-1, 1)
            else:
                out[name] = np.array(col, dtype=object).reshape(-1, 1)
        return out

    def run_feeds(self, feeds: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        start = time.perf_counter()
        result = self._session.run(None, feeds)
        self._inference.observe(time.perf_counter() - start)
        self._batch.observe(rows)
        self._predictions.inc(rows)
        return list(result)

    def run(self, columns: list[list[Any]], rows: int) -> Outputs:
        try:
            result = self.run_feeds(self.feeds(columns), rows)
        except Exception as e:
            text = str(e).strip()
            raise ScoringFailed(text.splitlines()[0][:300] if text else type(e).__name__) from e
        if self.classification:
            return Outputs(result[0].ravel().tolist(), result[1].tolist())
        return Outputs(result[0].ravel().tolist(), None)

    def format(self, outputs: Outputs) -> list[dict[str, Any]]:
        """Each row's prediction as the log stores it (and the v1 API returns it, with an id)."""
        if outputs.probabilities is None:
            return [{"value": v} for v in outputs.labels]
        keys = self.class_keys
        pairs = zip(outputs.labels, outputs.probabilities, strict=True)
        if len(keys) == 2:  # the common case, without a zip per row
            k0, k1 = keys
            return [{"label": label, "probabilities": {k0: p[0], k1: p[1]}} for label, p in pairs]
        return [
            {"label": label, "probabilities": dict(zip(keys, p, strict=True))} for label, p in pairs
        ]
