"""Mergeable counts of traffic on a version's reference bins.

A window holds, per feature, counts on the bins training fixed (plus missing and other), the
prediction-score bins and the predicted-label counts (and, for a classifier whose version ships
them, the sums its performance is estimated from: `estimate.aggregate`). Two windows merge by
adding counts, so a check costs the same whatever the number of rows behind it.
"""

import operator
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelloop.monitoring.columns import MISSING, OTHER, Bins, Names, bins, floats
from modelloop.monitoring.estimate.aggregate import ScoreCounts, ScoreFolder
from modelloop.store.log.batch import Batch
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.profile import categorical_bins, numeric_bins

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class Window:
    numeric: dict[str, tuple[IntArray, int]]  # counts per bin, missing
    categorical: dict[str, tuple[IntArray, int, int]]  # counts, other, missing
    score: tuple[IntArray, int]
    predicted: tuple[IntArray, int, int] | None
    rows: int = 0
    start: float = 0.0  # time of the first row
    end: float = 0.0  # time of the last row
    scores: ScoreCounts | None = None  # a classifier's sums for the estimated metrics
    # a regression's sum of each numeric feature's values per bin (its error model's within-bin
    # terms); empty when the version's error model has none
    sums: dict[str, FloatArray] = field(default_factory=dict)

    @classmethod
    def empty(cls, ref: ReferenceProfile) -> "Window":
        return cls(
            numeric={f: (np.zeros(len(p.counts), np.int64), 0) for f, p in ref.numeric.items()},
            categorical={
                f: (np.zeros(len(p.categories), np.int64), 0, 0) for f, p in ref.categorical.items()
            },
            score=(np.zeros(len(ref.score.counts), np.int64), 0),
            predicted=None
            if ref.predicted is None
            else (np.zeros(len(ref.predicted.categories), np.int64), 0, 0),
        )

    def merge(self, other: "Window") -> "Window":
        def add2(a: tuple[IntArray, int], b: tuple[IntArray, int]) -> tuple[IntArray, int]:
            return a[0] + b[0], a[1] + b[1]

        def add3(
            a: tuple[IntArray, int, int], b: tuple[IntArray, int, int]
        ) -> tuple[IntArray, int, int]:
            return a[0] + b[0], a[1] + b[1], a[2] + b[2]

        starts = [w.start for w in (self, other) if w.rows]
        scores = (
            self.scores.merge(other.scores)
            if self.scores is not None and other.scores is not None
            else self.scores or other.scores
        )
        return Window(
            numeric={f: add2(c, other.numeric[f]) for f, c in self.numeric.items()},
            categorical={f: add3(c, other.categorical[f]) for f, c in self.categorical.items()},
            score=add2(self.score, other.score),
            predicted=None
            if self.predicted is None or other.predicted is None
            else add3(self.predicted, other.predicted),
            rows=self.rows + other.rows,
            start=min(starts) if starts else 0.0,
            end=max(self.end, other.end),
            scores=scores,
            sums={f: s + other.sums[f] for f, s in self.sums.items() if f in other.sums},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": {f: [c.tolist(), m] for f, (c, m) in self.numeric.items()},
            "categorical": {f: [c.tolist(), o, m] for f, (c, o, m) in self.categorical.items()},
            "score": [self.score[0].tolist(), self.score[1]],
            "predicted": None
            if self.predicted is None
            else [self.predicted[0].tolist(), self.predicted[1], self.predicted[2]],
            "rows": self.rows,
            "start": self.start,
            "end": self.end,
            "scores": None if self.scores is None else self.scores.to_dict(),
            "sums": {f: s.tolist() for f, s in self.sums.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Window":
        def arr(x: Sequence[int]) -> IntArray:
            return np.asarray(x, dtype=np.int64)

        return cls(
            numeric={f: (arr(c), int(m)) for f, (c, m) in d["numeric"].items()},
            categorical={f: (arr(c), int(o), int(m)) for f, (c, o, m) in d["categorical"].items()},
            score=(arr(d["score"][0]), int(d["score"][1])),
            predicted=None
            if d["predicted"] is None
            else (arr(d["predicted"][0]), int(d["predicted"][1]), int(d["predicted"][2])),
            rows=int(d["rows"]),
            start=float(d["start"]),
            end=float(d["end"]),
            scores=ScoreCounts.from_dict(d["scores"]) if d.get("scores") else None,
            sums={f: np.asarray(s, dtype=np.float64) for f, s in (d.get("sums") or {}).items()},
        )


class Folder:
    """Folds decoded log rows into a window on one version's reference bins."""

    def __init__(self, meta: ModelMetadata, ref: ReferenceProfile) -> None:
        self.meta = meta
        self.ref = ref
        self.classes = [str(c) for c in meta.classes]
        self.binary = len(self.classes) == 2
        self.names = [*ref.numeric, *ref.categorical]
        est = meta.estimation
        self.scores: ScoreFolder | None = (
            ScoreFolder(self.classes, est)
            if meta.task == "classification" and est is not None and est.auc_edges
            else None
        )
        errors = est.error_model if est is not None else None
        # a regression whose error model reads within the bins: each bin's centre, to sum by
        self.centres: dict[str, FloatArray] = (
            {f: np.asarray(c, dtype=np.float64) for f, c in errors.within_centres.items()}
            if meta.task == "regression" and errors is not None
            else {}
        )
        # fold_batch: the numeric features' and the score's bins, one offset after the other in
        # one count; the categories, the predicted labels' and the classes' codes
        edges = [np.asarray(p.edges, dtype=np.float64) for p in ref.numeric.values()]
        self._bins = Bins([*edges, np.asarray(ref.score.edges, dtype=np.float64)])
        self._categories = {f: Names(p.categories) for f, p in ref.categorical.items()}
        # a label's code among the classes, then the predicted categories the classes are not
        # (one match of the labels for both): its class index and its predicted category
        predicted = [] if ref.predicted is None else ref.predicted.categories
        known = set(self.classes)
        self._labels = Names([*self.classes, *(c for c in predicted if c not in known)])
        spot = {c: i for i, c in enumerate(predicted)}
        self._to_predicted = np.asarray(
            [spot.get(c, OTHER) for c in self._labels.names] + [MISSING, OTHER], dtype=np.int64
        )  # a code's predicted code: indexed by the code (MISSING, OTHER: the last two)
        others = len(self._labels.names) - len(self.classes)
        empty = self.classes.index("") if "" in known else -1
        self._to_class = np.asarray(
            [*range(len(self.classes)), *([-1] * others), empty, -1], dtype=np.int64
        )  # a code's class index (-1: none), for ScoreFolder (which counts "" as a label)
        # every feature of a row in one C call (itemgetter of one name returns no tuple)
        self._getter: Callable[[Any], tuple[Any, ...]] | None = (
            operator.itemgetter(*self.names) if len(self.names) > 1 else None
        )

    def score_of(self, output: dict[str, Any]) -> float:
        if self.meta.task == "regression":
            value = output.get("value")
            return float(value) if isinstance(value, int | float) else float("nan")
        proba = output.get("probabilities")
        if isinstance(proba, dict) and proba:
            if self.binary:
                return float(proba.get(self.classes[1], float("nan")))
            return float(max(proba.values()))
        return float("nan")

    def columns(self, features: list[dict[str, Any]]) -> list[Sequence[Any]]:
        """Each reference feature's values over the rows (None where a row lacks it), numeric
        features first, in the reference's order."""
        if self._getter is not None:
            try:
                return list(zip(*map(self._getter, features), strict=True))
            except (KeyError, TypeError):  # a row lacks a feature, or is no object
                pass
        return [[f.get(name) for f in features] for name in self.names]

    def fold(
        self, features: list[dict[str, Any]], outputs: list[dict[str, Any]], times: list[float]
    ) -> Window:
        w = Window.empty(self.ref)
        if not features:
            return w
        columns = iter(self.columns(features))
        for (name, prof), col in zip(self.ref.numeric.items(), columns, strict=False):
            values = _floats(col)
            w.numeric[name] = numeric_bins(values, prof.edges)
            centres = self.centres.get(name)
            if centres is not None:
                w.sums[name] = _bin_sums(values, prof.edges, centres)
        for (name, cprof), col in zip(self.ref.categorical.items(), columns, strict=False):
            w.categorical[name] = categorical_bins(col, cprof.categories)
        w.score = numeric_bins(np.array([self.score_of(o) for o in outputs]), self.ref.score.edges)
        if self.ref.predicted is not None:
            w.predicted = categorical_bins(
                [str(o.get("label")) for o in outputs], self.ref.predicted.categories
            )
        if self.scores is not None:
            w.scores = self.scores.fold(outputs)
        w.rows = len(features)
        w.start, w.end = min(times), max(times)
        return w

    def fold_batch(self, batch: Batch, start: int = 0, stop: int | None = None) -> Window:
        """Fold rows [start, stop) of `batch`: the window `fold` makes of the same rows."""
        stop = batch.rows if stop is None else min(stop, batch.rows)
        n = stop - start
        if n <= 0:
            return Window.empty(self.ref)
        rows = slice(start, stop)
        nf = len(self.ref.numeric)
        x = np.empty((nf + 1, n), dtype=np.float64)
        for i, name in enumerate(self.ref.numeric):
            col = batch.features.get(name)
            x[i] = np.nan if col is None else floats(col[rows])
        x[nf] = self._scores(batch, rows, n)
        idx, missing_counts = self._bins.find(x)
        counts = np.bincount(idx.ravel(), minlength=self._bins.total + 1).astype(np.int64)
        missing = missing_counts.tolist()
        b = self._bins.bounds
        numeric = {
            f: (counts[b[i][0] : b[i][1]], missing[i]) for i, f in enumerate(self.ref.numeric)
        }
        categorical: dict[str, tuple[IntArray, int, int]] = {}
        for name, names in self._categories.items():
            col = batch.features.get(name)
            if col is None:
                categorical[name] = (np.zeros(len(names.names), np.int64), 0, n)
            else:
                categorical[name] = bins(names.codes(col[rows]), len(names.names))
        labels = batch.labels[rows] if batch.labels is not None else np.full(n, None, dtype=object)
        codes = self._labels.codes(labels, "label")
        w = Window(
            numeric=numeric,
            categorical=categorical,
            score=(counts[b[nf][0] : b[nf][1]], missing[nf]),
            predicted=None
            if self.ref.predicted is None
            else bins(self._to_predicted[codes], len(self.ref.predicted.categories)),
            rows=n,
            start=float(batch.ts[rows].min()),
            end=float(batch.ts[rows].max()),
        )
        for i, (name, prof) in enumerate(self.ref.numeric.items()):
            centres = self.centres.get(name)
            if centres is not None:
                w.sums[name] = _bin_sums(x[i], prof.edges, centres)
        if self.scores is not None:
            raw = self.scores.matrix({k: p[rows] for k, p in batch.probabilities.items()})
            pred = self._to_class[codes] if raw.shape[0] else np.zeros(0, dtype=np.int64)
            w.scores = self.scores.fold_arrays(raw, pred)
        return w

    def _scores(self, batch: Batch, rows: slice, n: int) -> FloatArray | float:
        """Each row's score (as `score_of`): NaN where it has none."""
        if self.meta.task == "regression":
            return np.nan if batch.values is None else batch.values[rows]
        proba = batch.probabilities
        if self.binary:
            p = proba.get(self.classes[1])
            return np.nan if p is None else p[rows]
        if not proba:
            return np.nan
        top: FloatArray = np.fmax.reduce(np.stack([p[rows] for p in proba.values()]), axis=0)
        return top


def _bin_sums(values: FloatArray, edges: list[float], centres: FloatArray) -> FloatArray:
    """The sum of the values in each bin (missing left out, as in the counts; an infinite
    value counts as its bin's centre)."""
    x = values[~np.isnan(values)]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="right")
    x = np.where(np.isinf(x), centres[idx], x)
    return np.asarray(np.bincount(idx, weights=x, minlength=len(edges) + 1), dtype=np.float64)


def _floats(values: Sequence[Any]) -> FloatArray:
    """A numeric feature's values as floats; missing (None) and text are NaN."""
    try:  # numbers only (the usual column): converted in C
        return np.frombuffer(array("d", values), dtype=np.float64)
    except (TypeError, OverflowError):
        return np.array(
            [np.nan if v is None or isinstance(v, str) else v for v in values], dtype=np.float64
        )
