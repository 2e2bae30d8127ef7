"""Per-window sums from the logged probabilities that the CBPE estimates are computed from.

For K classes a window keeps, after the version's calibration map:
- `confusion[j, k]`: the sum over rows predicted j of the calibrated P(class k) (the expected
  confusion matrix, rows predicted, columns true);
- `variance`: the sum over rows of p(1 - p), p the calibrated probability of the predicted
  class (the Bernoulli variance of the number of correct predictions);
- for each scored class (class 1 of two, every class of more), the count of rows and the sum of
  their calibrated P(class) in fine bins (fixed at training) of the logged probability.
Windows merge by adding them, like the drift counts.
"""

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelloop.monitoring.columns import Bins
from modelloop.store.metadata import CalibrationMap, Estimation

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class ScoreCounts:
    confusion: FloatArray  # (K, K)
    variance: float
    hist_rows: list[FloatArray]  # per scored class, rows per bin
    hist_positive: list[FloatArray]  # per scored class, sum of calibrated P(class) per bin
    rows: int = 0

    def merge(self, other: "ScoreCounts") -> "ScoreCounts":
        return ScoreCounts(
            self.confusion + other.confusion,
            self.variance + other.variance,
            [a + b for a, b in zip(self.hist_rows, other.hist_rows, strict=True)],
            [a + b for a, b in zip(self.hist_positive, other.hist_positive, strict=True)],
            self.rows + other.rows,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "confusion": self.confusion.tolist(),
            "variance": self.variance,
            "hist_rows": [h.tolist() for h in self.hist_rows],
            "hist_positive": [h.tolist() for h in self.hist_positive],
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScoreCounts":
        def arr(x: Sequence[float]) -> FloatArray:
            return np.asarray(x, dtype=np.float64)

        return cls(
            arr(d["confusion"]),
            float(d["variance"]),
            [arr(h) for h in d["hist_rows"]],
            [arr(h) for h in d["hist_positive"]],
            int(d["rows"]),
        )


def calibrate(cal: CalibrationMap | None, proba: FloatArray) -> FloatArray:
    """The calibrated probabilities of rows of logged probabilities (numpy only)."""
    if cal is None:
        return proba
    return _mapped(proba, zip(cal.classes, cal.x, cal.y, strict=True))


def _mapped(proba: FloatArray, maps: Iterable[tuple[int, Any, Any]]) -> FloatArray:
    """`proba` with each (class, x, y) map applied, the rows made to sum to 1 again."""
    out = proba.copy()
    for c, x, y in maps:
        out[:, c] = np.interp(proba[:, c], x, y)
    if out.shape[1] == 2:
        out[:, 0] = 1.0 - out[:, 1]
    else:
        out /= np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)
    return out


class ScoreFolder:
    """Folds logged outputs (label and probabilities) into `ScoreCounts`."""

    def __init__(self, classes: Sequence[str], estimation: Estimation) -> None:
        self.classes = list(classes)
        self.k = len(self.classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.calibration = estimation.calibration
        self.scored = [1] if self.k == 2 else list(range(self.k))
        self.edges = [np.asarray(e, dtype=np.float64) for e in estimation.auc_edges]
        if len(self.edges) != len(self.scored):
            raise ValueError("the version's score bins do not match its classes")
        self._get = operator.itemgetter(*self.classes)
        # the calibration map's points as arrays, once (np.interp converts lists every call)
        cal = self.calibration
        self._maps = (
            []
            if cal is None
            else [
                (c, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
                for c, x, y in zip(cal.classes, cal.x, cal.y, strict=True)
            ]
        )
        self._cells = np.arange(self.k, dtype=np.int64)
        self._bins = Bins(self.edges)

    def empty(self) -> ScoreCounts:
        return ScoreCounts(
            np.zeros((self.k, self.k)),
            0.0,
            [np.zeros(e.size + 1) for e in self.edges],
            [np.zeros(e.size + 1) for e in self.edges],
        )

    def _matrix(self, outputs: Sequence[dict[str, Any]]) -> tuple[FloatArray, list[Any]]:
        get = self._get
        try:
            rows = [get(o["probabilities"]) for o in outputs]
            return np.asarray(rows, dtype=np.float64).reshape(-1, self.k), [
                o.get("label") for o in outputs
            ]
        except (KeyError, TypeError, ValueError):  # a row without (all) probabilities
            pass
        kept, labels = [], []
        for o in outputs:
            p = o.get("probabilities")
            if isinstance(p, dict):
                try:
                    kept.append([float(p[c]) for c in self.classes])
                except (KeyError, TypeError, ValueError):
                    continue
                labels.append(o.get("label"))
        return np.asarray(kept, dtype=np.float64).reshape(-1, self.k), labels

    def fold(self, outputs: Sequence[dict[str, Any]]) -> ScoreCounts:
        raw, labels = self._matrix(outputs)
        index = self.index
        pred = np.fromiter(
            (index.get(str(lb), -1) for lb in labels), dtype=np.int64, count=len(labels)
        )
        return self.fold_arrays(raw, pred)

    def matrix(self, probabilities: Mapping[str, FloatArray]) -> FloatArray:
        """The (rows, K) logged probabilities of a batch's columns, in class order; no rows
        when a class has none (a row lacking a class's probability is NaN there)."""
        try:
            return np.stack([probabilities[c] for c in self.classes], axis=1).reshape(-1, self.k)
        except KeyError:
            return np.zeros((0, self.k))

    def _calibrate(self, proba: FloatArray) -> FloatArray:
        """`calibrate(self.calibration, proba)`, with the map's points prepared."""
        if not self._maps:
            return proba
        return _mapped(proba, self._maps)

    def fold_arrays(self, raw: FloatArray, pred: IntArray) -> ScoreCounts:
        """Fold rows of logged probabilities `raw` (rows, K), in class order, and the class
        index of each row's predicted label (-1 when it is no class: the most probable
        class). Rows with a missing or infinite probability are left out."""
        if self.k <= 8:  # a column at a time: np.all along a short axis is slow
            finite = np.isfinite(raw)
            ok = finite[:, 0].copy()
            for j in range(1, self.k):
                ok &= finite[:, j]
        else:
            ok = np.all(np.isfinite(raw), axis=1)
        if not ok.all():
            raw = raw[ok]
            pred = pred[ok]
        out = self.empty()
        if raw.shape[0] == 0:
            return out
        cal = self._calibrate(raw)
        unknown = pred < 0
        if unknown.any():
            pred = pred.copy()
            pred[unknown] = raw[unknown].argmax(axis=1)
        k = self.k
        cells = (pred[:, None] * k + self._cells).ravel()
        sums = np.bincount(cells, weights=cal.ravel(), minlength=k * k)
        out.confusion = np.asarray(sums, dtype=np.float64).reshape(k, k)
        p_pred = cal[np.arange(cal.shape[0]), pred]
        out.variance = float(np.sum(p_pred * (1.0 - p_pred)))
        # each scored class's bin (searchsorted of its edges), all classes at once
        found, _ = self._bins.find(np.ascontiguousarray(raw[:, self.scored].T))
        for i, (c, edges) in enumerate(zip(self.scored, self.edges, strict=True)):
            idx = found[i] - self._bins.offsets[i]
            size = edges.size + 1
            out.hist_rows[i] = np.bincount(idx, minlength=size).astype(np.float64)
            out.hist_positive[i] = np.asarray(
                np.bincount(idx, weights=cal[:, c], minlength=size), dtype=np.float64
            )
        out.rows = int(raw.shape[0])
        return out
