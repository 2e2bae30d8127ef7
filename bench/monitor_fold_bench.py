#!/usr/bin/env python3
"""The monitor's fold alone: rows/s of `Folder.fold_batch` on the log's batches against `fold`
on the same rows as dicts (a few seconds, one core).

    PYTHONPATH=src .venv/bin/python bench/monitor_fold_bench.py [--batches 400] [--seconds 2]

Also: the same batches joined 20 at a time (a 5,000-row chunk, the default chunk_rows) and
folded 1,000 rows at a time (the default window_rows), as the monitor's _read_chunk does.

The batches: 250 rows each, 9 numeric features (2 % missing) and a binary classifier's label
and probabilities, folded with the version's estimation (a ScoreFolder with a calibration map).
"""

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from modelloop.monitoring.columns import join
from modelloop.monitoring.window import Folder
from modelloop.store.log.batch import Batch, FloatArray, ObjectArray
from modelloop.store.metadata import CalibrationMap, Estimation, ModelMetadata, ReferenceProfile
from modelloop.store.profile import categorical_profile, numeric_profile

ROWS = 250
FEATURES = [f"num_{i}" for i in range(9)]
CLASSES = ["no", "yes"]


def folder(rng: np.random.Generator) -> Folder:
    ref = ReferenceProfile(
        rows=20_000,
        numeric={f: numeric_profile(rng.normal(size=20_000)) for f in FEATURES},
        categorical={},
        score=numeric_profile(rng.random(20_000)),
        predicted=categorical_profile(list(rng.choice(CLASSES, size=20_000))),
    )
    grid = np.linspace(0.0, 1.0, 50)
    est = Estimation(
        calibration=CalibrationMap(classes=[1], x=[grid.tolist()], y=[np.sort(grid**1.2).tolist()]),
        auc_edges=[np.linspace(0.01, 0.99, 99).tolist()],
    )
    meta = ModelMetadata.model_construct(task="classification", classes=CLASSES, estimation=est)
    return Folder(meta, ref)


def batch(seq: int, rng: np.random.Generator) -> Batch:
    features: dict[str, FloatArray | ObjectArray] = {}
    for f in FEATURES:
        x = rng.normal(size=ROWS)
        x[rng.random(ROWS) < 0.02] = np.nan
        features[f] = x
    p = rng.random(ROWS)
    labels = np.where(p > 0.5, "yes", "no").astype(object)
    proba = {"no": 1.0 - p, "yes": p}
    ts = np.full(ROWS, 1.7e9 + seq)
    return Batch(seq, "bench", 1, ts, np.zeros(ROWS), features, labels, proba)


def as_dicts(b: Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[float]]:
    cols = {f: [None if v != v else v for v in c.tolist()] for f, c in b.features.items()}
    feats = [{f: cols[f][i] for f in FEATURES} for i in range(b.rows)]
    assert b.labels is not None
    no, yes = b.probabilities["no"].tolist(), b.probabilities["yes"].tolist()
    outs = [
        {"label": lb, "probabilities": {"no": n, "yes": y}}
        for lb, n, y in zip(b.labels.tolist(), no, yes, strict=True)
    ]
    return feats, outs, b.ts.tolist()


def rate(run: Callable[[], None], rows: int, seconds: float) -> float:
    """Rows/s of the best of repeated passes over the batches, for about `seconds`."""
    best, spent = float("inf"), 0.0
    while spent < seconds:
        t = time.perf_counter()
        run()
        took = time.perf_counter() - t
        best, spent = min(best, took), spent + took
    return rows / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--chunk", type=int, default=20, help="batches per chunk (5,000 rows)")
    ap.add_argument("--window", type=int, default=1000, help="rows per fold of a chunk")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    fo = folder(rng)
    batches = [batch(i, rng) for i in range(args.batches)]
    dicts = [as_dicts(b) for b in batches]
    for b, d in zip(batches[:5], dicts[:5], strict=True):
        assert fo.fold_batch(b).to_dict() == fo.fold(*d).to_dict()
    rows = args.batches * ROWS

    def columnar() -> None:
        for b in batches:
            fo.fold_batch(b)

    def rowwise() -> None:
        for d in dicts:
            fo.fold(*d)

    chunks = [batches[i : i + args.chunk] for i in range(0, len(batches), args.chunk)]

    def joined() -> None:  # as the monitor's _read_chunk: a chunk's batches joined, folded
        for chunk in chunks:  # in windows' slices
            b = join(chunk)
            for i in range(0, b.rows, args.window):
                fo.fold_batch(b, i, i + args.window)

    fast = rate(columnar, rows, args.seconds)
    chunked = rate(joined, rows, args.seconds)
    slow = rate(rowwise, rows, args.seconds)
    print(
        json.dumps(
            {
                "rows_per_batch": ROWS,
                "numeric_features": len(FEATURES),
                "classes": len(CLASSES),
                "fold_batch_rows_per_s": round(fast),
                "fold_dicts_rows_per_s": round(slow),
                "speedup": round(fast / slow, 2),
                "us_per_batch": round(ROWS / fast * 1e6, 1),
                "batches_per_chunk": args.chunk,
                "rows_per_fold_of_a_chunk": args.window,
                "joined_chunk_rows_per_s": round(chunked),
                "load_average": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
