"""Folding a batch's columns gives exactly the window that folding the same rows as dicts does.

Random batches of every kind the log may hold (numbers, text and None mixed in numeric and
categorical features, unseen categories, int and str labels, missing probabilities; binary,
multi-class and regression versions, with and without estimation) are folded both ways, whole
and in slices, and the windows compared through `to_dict`.
"""

from typing import Any

import numpy as np
import pytest

from modelloop.monitoring.columns import Bins, join
from modelloop.monitoring.window import Folder
from modelloop.store.log.batch import Batch
from modelloop.store.metadata import (
    CalibrationMap,
    ErrorModel,
    Estimation,
    ModelMetadata,
    ReferenceProfile,
)
from modelloop.store.profile import categorical_profile, numeric_profile

NUMERIC = ("x0", "x1", "x2")
FEW = ["a", "b", "1", "2", "True", "None"]  # <= 8 categories: matched by comparison
MANY = [f"k{i}" for i in range(12)] + ["7", "2.5", "nan", "a\x00"]  # matched as text
CASES = 120


def _folder(kind: str, rng: np.random.Generator) -> Folder:
    kinds: dict[str, list[Any]] = {
        "binary": ["no", "yes"],
        "binary-int": [0, 1],
        "multi": ["a", "b", "c"],
        "multi-int": [3, 1, 2, 10],
        "regression": [],
    }
    classes = kinds[kind]
    names = [str(c) for c in classes]
    ref = ReferenceProfile(
        rows=1000,
        numeric={
            f: numeric_profile(rng.normal(size=500), n_bins=int(rng.integers(2, 12)))
            for f in NUMERIC
        },
        categorical={
            "few": categorical_profile(list(rng.choice(FEW, size=300))),
            "many": categorical_profile(list(rng.choice(MANY, size=500))),
            "absent": categorical_profile(["u", "v"]),
        },
        score=numeric_profile(rng.random(500) if classes else rng.normal(size=500)),
        predicted=categorical_profile(list(rng.choice([*names, "None"], size=200)))
        if classes
        else None,
    )
    task = "classification" if classes else "regression"
    estimation = None
    if classes:
        scored = [1] if len(classes) == 2 else list(range(len(classes)))
        calibration = None
        if rng.random() < 0.7:
            calibration = CalibrationMap(
                classes=scored,
                x=[[0.0, 0.3, 0.7, 1.0] for _ in scored],
                y=[sorted(rng.random(4).tolist()) for _ in scored],
            )
        estimation = Estimation(
            calibration=calibration,
            auc_edges=[np.sort(rng.random(int(rng.integers(1, 9)))).tolist() for _ in scored],
        )
    elif rng.random() < 0.8:
        centres = {
            f: rng.normal(size=len(p.edges) + 1).tolist()
            for f, p in ref.numeric.items()
            if rng.random() < 0.7
        }
        estimation = Estimation(error_model=ErrorModel.model_construct(within_centres=centres))
    meta = ModelMetadata.model_construct(task=task, classes=classes, estimation=estimation)
    return Folder(meta, ref)


def _numeric(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=n)
    x[rng.random(n) < 0.15] = np.nan
    if rng.random() < 0.5:
        return x
    out = np.array(x.tolist(), dtype=object)
    for i in range(n):
        r = rng.random()
        if r < 0.1:
            out[i] = None
        elif r < 0.2:
            out[i] = str(rng.choice(["abc", "1.5", "", "nan"]))
        elif r < 0.3:
            out[i] = int(rng.integers(-3, 3))
        elif r < 0.33:
            out[i] = bool(rng.random() < 0.5)
    return out


def _categorical(n: int, names: list[str], rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.25:  # every value a number: the store's float64 column
        x = rng.choice([1.0, 2.0, 7.0, 2.5, -0.0, np.nan, 3.0], size=n)
        return np.asarray(x, dtype=np.float64)
    pool: list[Any] = [
        *names,
        "unseen",
        "",
        None,
        float("nan"),
        1,
        2,
        7,
        1.0,
        2.5,
        True,
        "a\x00",
    ]
    return np.array([pool[int(rng.integers(len(pool)))] for _ in range(n)] + [None], dtype=object)[
        :n
    ]


def _labels(n: int, folder: Folder, rng: np.random.Generator) -> np.ndarray | None:
    if rng.random() < 0.1:
        return None
    pool: list[Any] = [*folder.meta.classes, *folder.classes, "other", None, "", 2]
    weights = np.ones(len(pool))
    weights[: 2 * len(folder.classes)] = 6
    picks = rng.choice(len(pool), size=n, p=weights / weights.sum())
    return np.array([pool[i] for i in picks] + [None], dtype=object)[:n]


def _batch(folder: Folder, rng: np.random.Generator) -> Batch:
    n = int(rng.integers(1, 80))
    features: dict[str, Any] = {}
    for f in NUMERIC:
        if rng.random() < 0.9:
            features[f] = _numeric(n, rng)
    features["few"] = _categorical(n, FEW, rng)
    if rng.random() < 0.9:
        features["many"] = _categorical(n, MANY, rng)
    proba: dict[str, np.ndarray] = {}
    labels = values = None
    if folder.meta.task == "classification":
        raw = rng.dirichlet(np.ones(len(folder.classes)), size=n)
        keys = list(folder.classes)
        if rng.random() < 0.2:
            keys.append("extra")
            raw = np.column_stack([raw, rng.random(n)])
        for j, key in enumerate(keys):
            if rng.random() < 0.1:
                continue  # no row has this class's probability
            p = raw[:, j].copy()
            p[rng.random(n) < 0.1] = np.nan  # rows without it
            proba[key] = p
        labels = _labels(n, folder, rng)
    else:
        values = rng.normal(size=n)
        values[rng.random(n) < 0.1] = np.nan
    ts = 1000.0 + rng.random(n) * 100
    return Batch(7, "m", 1, ts, np.zeros(n), features, labels, proba, values)


def _plain(v: Any, column: np.ndarray) -> Any:
    """A column's value as the JSON log row held it."""
    if column.dtype == np.float64:
        v = float(v)
        if v != v:
            return None
        return int(v) if v.is_integer() else v  # the service logs integers, so does the store
    return v


def _rows(b: Batch, rng: np.random.Generator) -> tuple[list[Any], list[Any], list[float]]:
    feats, outs = [], []
    for i in range(b.rows):
        row = {}
        for name, col in b.features.items():
            v = _plain(col[i], col)
            if v is not None or rng.random() < 0.7:  # a missing value: null or no key
                row[name] = v
        feats.append(row)
        out: dict[str, Any] = {}
        if b.values is not None:
            if b.values[i] == b.values[i]:
                out["value"] = float(b.values[i])
        else:
            if b.labels is not None and (b.labels[i] is not None or rng.random() < 0.5):
                out["label"] = b.labels[i]
            p = {k: float(a[i]) for k, a in b.probabilities.items() if a[i] == a[i]}
            if p or rng.random() < 0.5:
                out["probabilities"] = p
        outs.append(out)
    return feats, outs, b.ts.tolist()


@pytest.mark.parametrize("kind", ["binary", "binary-int", "multi", "multi-int", "regression"])
def test_folding_a_batch_equals_folding_its_rows(kind: str) -> None:
    rng = np.random.default_rng(
        ["binary", "binary-int", "multi", "multi-int", "regression"].index(kind)
    )
    for _ in range(CASES):
        folder = _folder(kind, rng)
        batch = _batch(folder, rng)
        feats, outs, times = _rows(batch, rng)
        assert folder.fold_batch(batch).to_dict() == folder.fold(feats, outs, times).to_dict()
        start = int(rng.integers(0, batch.rows))
        stop = int(rng.integers(start, batch.rows + 1))
        assert (
            folder.fold_batch(batch, start, stop).to_dict()
            == folder.fold(feats[start:stop], outs[start:stop], times[start:stop]).to_dict()
        )


def test_the_random_batches_reach_every_case() -> None:
    """The comparison above is worth something only if the windows count what it is about."""
    rng = np.random.default_rng(99)
    seen = {"other": 0, "missing": 0, "numbers": 0, "no scores": 0, "unknown label": 0}
    for _ in range(50):
        folder = _folder("multi-int", rng)
        batch = _batch(folder, rng)
        w = folder.fold_batch(batch)
        _, other, missing = w.categorical["few"]
        seen["other"] += other
        seen["missing"] += missing
        seen["numbers"] += int(batch.features["few"].dtype == np.float64)
        assert w.scores is not None
        seen["no scores"] += batch.rows - w.scores.rows
        assert w.predicted is not None
        seen["unknown label"] += w.predicted[1]
    assert all(seen.values()), seen


def test_the_bins_of_all_columns_at_once_are_each_columns_search() -> None:
    """`Bins.find` (a table of fine cells, searching only values near an edge) against
    `searchsorted`, on edges of every shape: none, one, repeated spacing, a tiny range far
    from zero, a range no grid can cut, and values on the edges, beside them and infinite."""
    rng = np.random.default_rng(5)
    shapes = [
        np.zeros(0),
        np.array([0.0]),
        np.array([3.5e12]),
        np.sort(rng.normal(size=19)),
        np.sort(rng.gamma(0.5, size=30)),
        1e10 + np.sort(rng.random(5)) * 1e-4,  # cells finer than the values' rounding
        np.array([-1e300, 0.0, 1e300]),
        np.array([-5e-324, 0.0, 5e-324]),
        np.linspace(0.01, 0.99, 99),
    ]
    for _ in range(30):
        edges = [shapes[int(i)] for i in rng.integers(len(shapes), size=int(rng.integers(1, 8)))]
        bins = Bins(edges)
        n = int(rng.integers(1, 300))
        x = np.empty((len(edges), n))
        for f, e in enumerate(edges):
            pool = np.concatenate(
                [e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), [np.inf, -np.inf, np.nan]]
            )
            scale = float(np.ptp(e)) if e.size > 1 else 1.0
            near = rng.choice(pool, size=n) if pool.size else np.zeros(n)
            wide = (rng.normal(size=n) * 2 * scale) + (e.mean() if e.size else 0.0)
            x[f] = np.where(rng.random(n) < 0.4, near, wide)
        found, missing = bins.find(x)
        for f, e in enumerate(edges):
            nan = np.isnan(x[f])
            want = np.searchsorted(e, x[f], side="right") + bins.offsets[f]
            assert (found[f][~nan] == want[~nan]).all(), (f, e)
            assert (found[f][nan] == bins.total).all()
            assert missing[f] == nan.sum()


@pytest.mark.parametrize("kind", ["binary-int", "multi", "regression"])
def test_folding_joined_batches_equals_folding_all_their_rows(kind: str) -> None:
    """The monitor folds a chunk's batches joined into one (columns of either form)."""
    rng = np.random.default_rng(50 + len(kind))
    for _ in range(CASES // 2):
        folder = _folder(kind, rng)
        batches = [_batch(folder, rng) for _ in range(int(rng.integers(1, 5)))]
        feats: list[Any] = []
        outs: list[Any] = []
        times: list[float] = []
        for b in batches:
            f, o, t = _rows(b, rng)
            feats, outs, times = feats + f, outs + o, times + t
        joined = join(batches)
        assert joined.rows == len(feats)
        assert joined.seq == batches[-1].seq
        assert folder.fold_batch(joined).to_dict() == folder.fold(feats, outs, times).to_dict()
