#!/usr/bin/env python3
"""The monitor's drift check and ingestion, and Evidently on the same data, side by side.

    .venv/bin/python bench/monitor_bench.py                         # everything, ~3-4 min
    .venv/bin/python bench/monitor_bench.py --rows 200000 --no-evidently --no-postgres
    .venv/bin/python bench/monitor_bench.py --profile               # py-spy the monitor passes

What it does, in one run:

1. Generates seeded synthetic data (numpy): a reference of --reference rows and a current
   window of --rows rows, 25 numeric and 5 categorical columns. In the current data three
   numeric columns are shifted by 0.25 reference std and one category's share moves by 10
   points. Both are written once to a temp dir (data.npz + meta.json) that both tools read.
   A logreg model is trained on a CSV of the reference with `run_training` (as `modelloop
   train --data` does), which writes the version's reference profile.
2. Ours (a subprocess, for its peak RSS): folds the window into counts (a) from numpy arrays
   and from JSON log rows decoded in chunks as the monitor does, (b) times `check(...)` on
   the counts, (c) times the noise calibration; records `check(...).flagged`.
3. Evidently (bench/.venv-evidently, `bash bench/evidently/setup.sh`): DataDriftPreset on
   the same reference and current frames; wall time and peak RSS. Ours runs before and after
   it; the median is reported.
4. Ingestion: --log-rows log rows written with PredictionLog.write into a fresh SQLite file
   and a fresh PostgreSQL database (127.0.0.1:5432, dropped at the end), then one fresh
   Monitor.run_once() over them in a subprocess (--profile: under py-spy). "warm" has the
   noise calibration computed before the timer starts (it is once per version); "cold" is a
   fresh Monitor from nothing.

Writes bench/results/monitor-<date>.json and prints Markdown tables.
"""

import argparse
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = ROOT / ".venv" / "bin" / "python"
PYSPY = ROOT / ".venv" / "bin" / "py-spy"
EV_PY = HERE / ".venv-evidently" / "bin" / "python"
EV_SCRIPT = HERE / "evidently" / "run_evidently.py"
MODEL = "bench"
N_NUMERIC, N_CATEGORICAL = 25, 5
SHIFTED_NUMERIC = ("num_08", "num_11", "num_20")  # normal, uniform, gamma
SHIFTED_CATEGORICAL = "cat_1"
SHIFT_STD = 0.25
SHIFT_SHARE = 0.10
MISSING_COLUMNS = {"num_05": 0.02, "num_17": 0.02}
CARDINALITIES = (3, 5, 8, 12, 30)

sys.path.insert(0, str(ROOT / "src"))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- data --------------------------------------------------------------------------------------


def _numeric_column(rng: Any, i: int, n: int) -> Any:
    """Column i of the numeric block: eight shapes, scaled and placed by i."""
    import numpy as np

    kind, scale, loc = i % 8, 1.0 + (i % 5), 10.0 * (i % 3)
    if kind == 0:
        x = rng.normal(0.0, 1.0, n)
    elif kind == 1:
        x = rng.lognormal(0.0, 0.6, n)
    elif kind == 2:
        x = rng.exponential(1.0, n)
    elif kind == 3:
        x = rng.uniform(-1.0, 1.0, n)
    elif kind == 4:
        x = rng.gamma(2.0, 1.0, n)
    elif kind == 5:  # bimodal
        x = np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(1.0, 0.8, n))
    elif kind == 6:  # small integers (counts): few distinct values, ties at bin edges
        x = rng.poisson(3.0, n).astype(np.float64)
    else:  # heavy tails
        x = rng.standard_t(5, n)
    return loc + scale * x


def _shares(seed: int) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng([seed, 99])
    out = []
    for k in CARDINALITIES:
        p = np.sort(rng.dirichlet(np.full(k, 2.0)))[::-1]
        if k <= 5:  # make the top category big enough to give 10 points away
            p = 0.5 * p + 0.5 * np.eye(k)[0]
        out.append(p / p.sum())
    return out


def generate(n: int, seed: int, stream: int, shifted: bool, ref_std: Any = None) -> dict[str, Any]:
    """n rows: numeric (n, 25) float64 (float32-exact), categorical codes (n, 5) uint8."""
    import numpy as np

    rng = np.random.default_rng([seed, stream])
    num = np.empty((n, N_NUMERIC))
    for i in range(N_NUMERIC):
        num[:, i] = _numeric_column(rng, i, n)
    names = [f"num_{i:02d}" for i in range(N_NUMERIC)]
    if shifted:
        for name in SHIFTED_NUMERIC:
            i = names.index(name)
            num[:, i] += SHIFT_STD * ref_std[i]
    for name, rate in MISSING_COLUMNS.items():
        num[rng.random(n) < rate, names.index(name)] = np.nan
    num = num.astype(np.float32).astype(np.float64)  # training rounds to float32 too
    cat = np.empty((n, N_CATEGORICAL), dtype=np.uint8)
    for j, p in enumerate(_shares(seed)):
        if shifted and f"cat_{j}" == SHIFTED_CATEGORICAL:
            p = p.copy()
            p[0] -= SHIFT_SHARE  # 10 points from the top category to the second
            p[1] += SHIFT_SHARE
        cat[:, j] = rng.choice(len(p), size=n, p=p)
    return {"num": num, "cat": cat}


def make_data(work: Path, ref_rows: int, cur_rows: int, seed: int) -> dict[str, Any]:
    """Write data.npz + meta.json + reference.csv into work; return meta."""
    import numpy as np
    import pandas as pd

    num_names = [f"num_{i:02d}" for i in range(N_NUMERIC)]
    cat_names = [f"cat_{j}" for j in range(N_CATEGORICAL)]
    categories = [
        [f"c{j}_{chr(97 + k % 26)}{k // 26 or ''}" for k in range(c)]
        for j, c in enumerate(CARDINALITIES)
    ]
    ref = generate(ref_rows, seed, 1, shifted=False)
    ref_std = np.nanstd(ref["num"], axis=0)
    cur = generate(cur_rows, seed, 2, shifted=True, ref_std=ref_std)

    # The label the model learns: a logistic function of a few columns (shifted ones included).
    rng = np.random.default_rng([seed, 3])
    z = np.nan_to_num((ref["num"] - np.nanmean(ref["num"], axis=0)) / ref_std)
    w = np.zeros(N_NUMERIC)
    w[[0, 3, 8, 9, 11, 20]] = [1.0, -0.6, 0.8, 0.7, -0.5, 0.6]
    logit = z @ w + 0.8 * (ref["cat"][:, 1] == 0) - 0.5 * (ref["cat"][:, 2] == 1)
    label = (rng.random(ref_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    np.savez(
        work / "data.npz",
        ref_num=ref["num"],
        ref_cat=ref["cat"],
        cur_num=cur["num"],
        cur_cat=cur["cat"],
    )
    meta = {
        "numeric": num_names,
        "categorical": cat_names,
        "categories": categories,
        "shifted": [*SHIFTED_NUMERIC, SHIFTED_CATEGORICAL],
        "reference_rows": ref_rows,
        "current_rows": cur_rows,
        "seed": seed,
    }
    (work / "meta.json").write_text(json.dumps(meta))
    frame = pd.DataFrame(ref["num"], columns=num_names)
    for j, name in enumerate(cat_names):
        frame[name] = np.array(categories[j], dtype=object)[ref["cat"][:, j]]
    frame["label"] = label
    frame.to_csv(work / "reference.csv", index=False, float_format="%.9g")
    return meta


def current_frame(arrays: Any, meta: dict[str, Any], lo: int, hi: int) -> Any:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(arrays["cur_num"][lo:hi], columns=meta["numeric"])
    for j, name in enumerate(meta["categorical"]):
        frame[name] = np.array(meta["categories"][j], dtype=object)[arrays["cur_cat"][lo:hi, j]]
    return frame


def train(work: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Train logreg on the reference CSV; score the current rows with the fitted pipeline."""
    import numpy as np

    from modelloop.store.registry import FolderRegistry
    from modelloop.training.pipeline import TrainRequest, run_training

    t0 = time.perf_counter()
    result = run_training(
        TrainRequest(
            model=MODEL,
            data=work / "reference.csv",
            target="label",
            estimator="logreg",
            categorical=tuple(meta["categorical"]),
        ),
        FolderRegistry(work / "registry"),
    )
    took = time.perf_counter() - t0
    assert result.pipeline is not None
    arrays = np.load(work / "data.npz")
    n = meta["current_rows"]
    score = np.empty(n)
    label = np.empty(n, dtype=np.int64)
    for lo in range(0, n, 100_000):
        frame = current_frame(arrays, meta, lo, min(n, lo + 100_000))
        proba = result.pipeline.predict_proba(frame)
        score[lo : lo + len(frame)] = proba[:, 1]
        label[lo : lo + len(frame)] = result.pipeline.classes_[proba.argmax(axis=1)]
    np.savez(work / "outputs.npz", score=score, label=label)
    md = result.metadata
    return {
        "train_s": took,
        "version": md.version,
        "profile_rows": md.data.rows_train + md.data.rows_validation,
        "test_metrics": {k: v for k, v in md.metrics.items() if v is not None},
        "classes": [str(c) for c in md.classes],
    }


# -- ours: fold, check, calibrate (subprocess) -------------------------------------------------


def worker_ours(work: Path, decoded_rows: int, check_repeats: int) -> dict[str, Any]:
    import numpy as np
    import orjson

    from modelloop.monitoring.check import PreparedReference, calibrate_reference, check
    from modelloop.monitoring.settings import MonitorSettings
    from modelloop.monitoring.window import Folder, Window
    from modelloop.store.profile import categorical_bins, numeric_bins
    from modelloop.store.registry import FolderRegistry

    meta = json.loads((work / "meta.json").read_text())
    registry = FolderRegistry(work / "registry")
    version = registry.active(MODEL)
    assert version is not None
    mmeta, ref = registry.metadata(MODEL, version), registry.reference(MODEL, version)
    arrays = dict(np.load(work / "data.npz"))
    outs = dict(np.load(work / "outputs.npz"))
    num, codes = arrays["cur_num"], arrays["cur_cat"]
    n = len(num)
    cats = [np.array(c, dtype=object) for c in meta["categories"]]
    cat_cols = [cats[j][codes[:, j]] for j in range(len(cats))]  # object arrays of str
    labels = np.array([str(c) for c in mmeta.classes], dtype=object)
    label_col = labels[np.searchsorted(np.array(mmeta.classes), outs["label"])]
    multiplier = MonitorSettings().drift_multiplier
    rss_data = rss_mib()
    out: dict[str, Any] = {"rows": n, "multiplier": multiplier}

    # (a) fold from numpy arrays: the reference bins, as store.profile does
    t0 = time.perf_counter()
    w = Window.empty(ref)
    for i, name in enumerate(meta["numeric"]):
        w.numeric[name] = numeric_bins(num[:, i], ref.numeric[name].edges)
    t_num = time.perf_counter() - t0
    t1 = time.perf_counter()
    for j, name in enumerate(meta["categorical"]):
        w.categorical[name] = categorical_bins(cat_cols[j], ref.categorical[name].categories)
    t_cat = time.perf_counter() - t1
    t1 = time.perf_counter()
    w.score = numeric_bins(outs["score"], ref.score.edges)
    assert ref.predicted is not None
    w.predicted = categorical_bins(label_col, ref.predicted.categories)
    t_out = time.perf_counter() - t1
    w.rows, w.start, w.end = n, 0.0, 1.0
    out["fold_arrays"] = {
        "total_s": time.perf_counter() - t0,
        "numeric_s": t_num,
        "categorical_s": t_cat,
        "outputs_s": t_out,
    }

    # (c) noise calibration, once per version
    t0 = time.perf_counter()
    calibration = calibrate_reference(ref)
    out["calibrate_s"] = time.perf_counter() - t0

    # (b) the check on the counts: one 1M window; and two merged, as the monitor runs it
    result = check([w], ref, calibration, multiplier)
    times = []
    for _ in range(check_repeats):
        t0 = time.perf_counter()
        check([w], ref, calibration, multiplier)
        times.append(time.perf_counter() - t0)
    times2 = []
    for _ in range(check_repeats):
        t0 = time.perf_counter()
        check([w, w], ref, calibration, multiplier)
        times2.append(time.perf_counter() - t0)
    # ... and as the monitor runs it: the reference prepared once per version
    t0 = time.perf_counter()
    prepared = PreparedReference(ref, calibration)
    out["prepare_s"] = time.perf_counter() - t0
    times3 = []
    for _ in range(check_repeats):
        t0 = time.perf_counter()
        check([w, w], ref, calibration, multiplier, prepared=prepared)
        times3.append(time.perf_counter() - t0)
    out["check_s"] = statistics.median(times)
    out["check_max_s"] = max(times)
    out["check_merged2_s"] = statistics.median(times2)
    out["check_merged2_prepared_s"] = statistics.median(times3)
    out["verdict"] = result.verdict
    out["flagged"] = result.flagged
    out["features"] = {
        d.feature: {
            "statistic": d.primary,
            "score": d.score(d.primary),
            "threshold": result.thresholds.get(d.feature, {}).get(d.primary),
            "thresholds": result.thresholds.get(d.feature, {}),
            "wasserstein": d.wasserstein,
            "linf": d.linf,
            "psi": d.psi,
            "flagged_by": list(d.flagged),
        }
        for d in result.features
    }
    out["rss_after_data_mib"] = rss_data
    out["peak_rss_mib"] = peak_rss_mib()  # before the log-row fold below, whose texts add to it

    # (a') fold from log rows as the monitor does: orjson-decode chunks, Folder.fold, merge
    folder = Folder(mmeta, ref)
    k0, k1 = [str(c) for c in mmeta.classes]
    chunk = 20_000
    decode_s = fold_s = 0.0
    decoded: Window | None = None
    m = min(decoded_rows, n)
    for lo in range(0, m, chunk):
        hi = min(m, lo + chunk)
        ftexts, otexts = _log_texts(num, cat_cols, outs, meta, lo, hi, k0, k1)
        t0 = time.perf_counter()
        feats = [orjson.loads(t) for t in ftexts]
        outputs = [orjson.loads(t) for t in otexts]
        t1 = time.perf_counter()
        part = folder.fold(feats, outputs, [0.0] * len(feats))
        decoded = part if decoded is None else decoded.merge(part)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        fold_s += t2 - t1
    if decoded is not None:
        same = (
            all(np.array_equal(decoded.numeric[f][0], w.numeric[f][0]) for f in w.numeric)
            and (
                all(
                    np.array_equal(decoded.categorical[f][0], w.categorical[f][0])
                    for f in w.categorical
                )
            )
            if m == n
            else None
        )
        out["fold_log"] = {
            "rows": m,
            "decode_s": decode_s,
            "fold_s": fold_s,
            "total_s": decode_s + fold_s,
            "rows_per_s": m / (decode_s + fold_s),
            "same_counts_as_arrays": same,
        }

    return out


def _log_texts(
    num: Any,
    cat_cols: list[Any],
    outs: dict[str, Any],
    meta: dict[str, Any],
    lo: int,
    hi: int,
    k0: str,
    k1: str,
) -> tuple[list[str], list[str]]:
    """Log rows lo:hi as the service stores them: features and output as JSON text."""
    import orjson

    rows = _log_dicts(num, cat_cols, outs, meta, lo, hi, k0, k1)
    return [orjson.dumps(f).decode() for f, _ in rows], [orjson.dumps(o).decode() for _, o in rows]


def _log_dicts(
    num: Any,
    cat_cols: list[Any],
    outs: dict[str, Any],
    meta: dict[str, Any],
    lo: int,
    hi: int,
    k0: str,
    k1: str,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    import math

    names, cnames = meta["numeric"], meta["categorical"]
    block = num[lo:hi].tolist()
    cblock = [c[lo:hi].tolist() for c in cat_cols]
    scores = outs["score"][lo:hi].tolist()
    labels = outs["label"][lo:hi].tolist()
    rows = []
    for r in range(hi - lo):
        f: dict[str, Any] = {
            k: (None if math.isnan(v) else v) for k, v in zip(names, block[r], strict=True)
        }
        for j, k in enumerate(cnames):
            f[k] = cblock[j][r]
        p = scores[r]
        rows.append((f, {"label": labels[r], "probabilities": {k0: 1.0 - p, k1: p}}))
    return rows


# -- ingestion ---------------------------------------------------------------------------------


def fill_log(url: str, work: Path, rows: int, batch: int) -> dict[str, Any]:
    """Write `rows` log rows (the current data, an hour old) with PredictionLog.write."""
    import numpy as np

    from modelloop.store.database import open_database
    from modelloop.store.log import PredictionLog
    from modelloop.store.registry import FolderRegistry

    meta = json.loads((work / "meta.json").read_text())
    registry = FolderRegistry(work / "registry")
    version = registry.active(MODEL)
    mmeta = registry.metadata(MODEL, version)  # type: ignore[arg-type]
    k0, k1 = [str(c) for c in mmeta.classes]
    arrays = np.load(work / "data.npz")
    outs = dict(np.load(work / "outputs.npz"))
    take = np.arange(rows) % len(arrays["cur_num"])  # cycles when --rows < --log-rows
    num = arrays["cur_num"][take]
    outs = {k: v[take] for k, v in outs.items()}
    cats = [np.array(c, dtype=object) for c in meta["categories"]]
    cat_cols = [cats[j][arrays["cur_cat"][take, j]] for j in range(len(cats))]
    db = open_database(url)
    plog = PredictionLog(db)
    base = time.time() - 3600
    prefix = secrets.token_hex(4)
    write_s = 0.0
    for lo in range(0, rows, batch):
        hi = min(rows, lo + batch)
        pairs = _log_dicts(num, cat_cols, outs, meta, lo, hi, k0, k1)
        batch_rows = [
            {
                "id": f"{prefix}-{lo + i}",
                "ts": base + (lo + i) * 1e-3,
                "model": MODEL,
                "version": version,
                "features": f,
                "output": o,
                "latency_ms": 1.5,
            }
            for i, (f, o) in enumerate(pairs)
        ]
        t0 = time.perf_counter()
        plog.write(batch_rows)  # type: ignore[arg-type]
        write_s += time.perf_counter() - t0
    count = plog.count(MODEL)
    db.dispose()
    return {"rows": count, "write_s": write_s, "write_rows_per_s": count / write_s}


def worker_monitor(work: Path, url: str, home: Path, warm: bool) -> dict[str, Any]:
    """One fresh Monitor.run_once() over the whole log, timed."""
    import logging

    from prometheus_client import CollectorRegistry

    from modelloop.monitoring.metrics import MonitorMetrics
    from modelloop.monitoring.settings import MonitorSettings
    from modelloop.monitoring.worker import Monitor
    from modelloop.store.database import open_database
    from modelloop.store.log import PredictionLog
    from modelloop.store.registry import FolderRegistry
    from modelloop.store.reports import DriftReports

    logging.basicConfig(level=logging.WARNING)
    settings = MonitorSettings(
        home=home,
        database_url=url,
        registry=work / "registry",
        settle_seconds=0,
        chunk_rows=20_000,
    )
    db = open_database(settings.database)
    rows = PredictionLog(db).count(MODEL)
    registry = FolderRegistry(settings.registry_location)
    monitor = Monitor(settings, db, registry, MonitorMetrics(CollectorRegistry()))
    calibrate_s = None
    if warm:  # the calibration is cached per (model, version): compute it before the timer
        version = registry.active(MODEL)
        assert version is not None
        t0 = time.perf_counter()
        monitor._calibration(MODEL, version, registry.reference(MODEL, version))
        calibrate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    monitor.run_once()
    took = time.perf_counter() - t0
    ctx = monitor.contexts[MODEL]
    reports = len(DriftReports(db).list(MODEL, limit=100_000))
    out = {
        "rows": rows,
        "run_once_s": took,
        "rows_per_s": rows / took,
        "watermark_at_end": ctx.watermark,
        "windows_closed": reports,
        "window_rows": settings.window_rows,
        "state": ctx.rule.state,
        "calibrate_s": calibrate_s,
        "peak_rss_mib": peak_rss_mib(),
        "errors": monitor.metrics.errors._value.get(),
    }
    db.dispose()
    return out


def summarise_raw_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy `--format raw` (collapsed stacks): self and inclusive samples per function."""
    self_s: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_s[_frame(frames[-1])] += n
        for f in {_frame(x) for x in frames}:
            incl[f] += n
    return {
        "samples": total,
        "self": [(f, round(c / total, 4)) for f, c in self_s.most_common(top)],
        "inclusive": [(f, round(c / total, 4)) for f, c in incl.most_common(top * 2)],
    }


def _frame(f: str) -> str:
    # "name (path/to/file.py:123)" -> "name (file.py)"
    name, _, where = f.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1] if where else ""
    return f"{name} ({file})" if file else name


# -- orchestration -----------------------------------------------------------------------------


def run_sub(
    args: list[str],
    timeout: float,
    wrap: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], float]:
    """Run a worker; return its last-line JSON and the wall time around it."""
    cmd = [*(wrap or []), *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    return json.loads(lines[-1]), wall


def run_evidently(work: Path, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    res, wall = run_sub([str(EV_PY), str(EV_SCRIPT), str(work)], timeout, env=env)
    res["process_wall_s"] = wall
    return res


def run_ours(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    res, wall = run_sub(
        [
            str(PY),
            __file__,
            "--worker",
            "ours",
            "--work",
            str(work),
            "--decoded-rows",
            str(args.decoded_rows),
        ],
        timeout=900,
    )
    res["process_wall_s"] = wall
    return res


class Postgres:
    """A fresh database on the server at --pg-url, created and dropped here (autocommit)."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.name = f"modelloop_bench_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def ingestion(work: Path, args: argparse.Namespace, results_dir: Path) -> list[dict[str, Any]]:
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    runs = [("warm", i) for i in range(max(1, args.ingest_rounds))] + [("cold", 0)]
    out = []
    for mode, round_ in runs:
        for backend in backends:  # interleaved: sqlite, pg, sqlite, pg, ...
            pg = None
            home = work / f"home-{backend}-{mode}"
            home.mkdir()
            try:
                if backend == "sqlite":
                    url = f"sqlite:///{home / 'modelloop.db'}"
                else:
                    pg = Postgres(args.pg_url)
                    url = pg.url
                fill = fill_log(url, work, args.log_rows, args.write_batch)
                wrap = None
                profile = None
                if args.profile and mode == "warm" and round_ == 0:
                    profile = results_dir / f"monitor-profile-{backend}-{dt.date.today()}.txt"
                    wrap = [
                        str(PYSPY),
                        "record",
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-o",
                        str(profile),
                        "--",
                    ]
                res, wall = run_sub(
                    [
                        str(PY),
                        __file__,
                        "--worker",
                        "monitor",
                        "--work",
                        str(work),
                        "--url",
                        url,
                        "--home",
                        str(home),
                    ]
                    + (["--warm"] if mode == "warm" else []),
                    timeout=900,
                    wrap=wrap,
                )
                res.update(
                    backend=backend, mode=mode, round=round_, write=fill, process_wall_s=wall
                )
                if profile is not None and profile.exists():
                    res["profile"] = {
                        "file": str(profile.relative_to(ROOT)),
                        **summarise_raw_profile(profile),
                    }
                out.append(res)
                print(
                    f"  ingestion {backend} {mode}: {res['rows_per_s']:,.0f} rows/s "
                    f"(write {fill['write_rows_per_s']:,.0f} rows/s)",
                    flush=True,
                )
            finally:
                if pg is not None:
                    pg.drop()
                shutil.rmtree(home, ignore_errors=True)
    return out


def verdicts(meta: dict[str, Any], ours: dict[str, Any], ev: dict[str, Any] | None) -> list[Any]:
    rows = []
    for col in [*meta["numeric"], *meta["categorical"]]:
        o = ours["features"][col]
        e = (ev or {}).get("columns", {}).get(col, {})
        rows.append(
            {
                "column": col,
                "shifted": col in meta["shifted"],
                "ours_flagged": col in ours["flagged"],
                "ours_statistic": o["statistic"],
                "ours_score": o["score"],
                "ours_threshold": o["threshold"],
                "ours_flagged_by": o["flagged_by"],
                "evidently_flagged": e.get("drifted"),
                "evidently_method": e.get("method"),
                "evidently_score": e.get("score"),
                "evidently_threshold": e.get("threshold"),
            }
        )
    return rows


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def markdown(report: dict[str, Any]) -> str:
    ours = report["ours"]
    o = ours["median"]
    ev = report.get("evidently")
    lines = [
        f"Monitor bench {report['date']} ({report['machine']}): {report['rows']:,} current rows x "
        f"30 features vs a {report['reference_rows']:,}-row reference "
        f"(profile on {report['training']['profile_rows']:,} train+validation rows)",
        "",
        "| step | time | note |",
        "| --- | ---: | --- |",
        f"| (a) fold {report['rows']:,} rows to counts, from numpy arrays | "
        f"{fmt_s(o['fold_arrays_s'])} | "
        f"numeric {fmt_s(o['fold_numeric_s'])}, categorical {fmt_s(o['fold_categorical_s'])} |",
    ]
    if o.get("fold_log_s") is not None:
        lines.append(
            f"| (a) fold {o['fold_log_rows']:,} logged rows (orjson decode + Folder.fold) | "
            f"{fmt_s(o['fold_log_s'])} | decode {fmt_s(o['fold_log_decode_s'])}, fold "
            f"{fmt_s(o['fold_log_fold_s'])}: {o['fold_log_rows_per_s']:,.0f} rows/s |"
        )
    lines += [
        f"| (b) check on the counts (1 window) | {fmt_s(o['check_s'])} | target ≤ 1 s |",
        f"| (b) check, 2 windows merged (the monitor's default) | "
        f"{fmt_s(o['check_merged2_s'])} | |",
        f"| (b) the same, reference prepared once per version (as the monitor runs it) | "
        f"{fmt_s(o['check_merged2_prepared_s'])} | preparing: {fmt_s(o['prepare_s'])} |",
        f"| (c) noise calibration (once per version) | {fmt_s(o['calibrate_s'])} | |",
        f"| ours end to end (fold arrays + check) | {fmt_s(o['drift_s'])} | peak RSS "
        f"{o['peak_rss_mib']:.0f} MiB (data {o['rss_after_data_mib']:.0f} MiB) |",
    ]
    if ev:
        lines.append(
            f"| Evidently {ev['evidently']} DataDriftPreset | {fmt_s(ev['drift_s'])} | peak RSS "
            f"{ev['peak_rss_mib']:.0f} MiB (data {ev['rss_after_data_mib']:.0f} MiB) |"
        )
        r = report["ratios"]
        lines.append(
            f"| **ratio Evidently / ours** | **{r['time_vs_fold_arrays_and_check']:.0f}x** "
            f"(vs decoded-log fold + check: {r['time_vs_fold_log_and_check']:.1f}x; vs check "
            f"alone: {r['time_vs_check']:,.0f}x) | peak RSS {r['peak_rss']:.1f}x |"
        )
    lines += [
        "",
        "| column | shifted | ours | main statistic: score / threshold (flagged by) | "
        "Evidently | method: score / threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in report["verdicts"]:
        if not (v["shifted"] or v["ours_flagged"] or v["evidently_flagged"]):
            continue
        lines.append(
            f"| {v['column']} | {'yes' if v['shifted'] else 'no'} | "
            f"{'drift' if v['ours_flagged'] else 'ok'} | {v['ours_statistic']}: "
            f"{v['ours_score']:.4f} / {v['ours_threshold']:.4f} "
            f"({', '.join(v['ours_flagged_by']) or '–'}) | "
            + (
                f"{'drift' if v['evidently_flagged'] else 'ok'} | {v['evidently_method']}: "
                f"{v['evidently_score']:.4f} / {v['evidently_threshold']}"
                if v["evidently_flagged"] is not None
                else "– | –"
            )
            + " |"
        )
    vs = report["verdict_summary"]
    lines.append(
        f"\nflagged by ours: {', '.join(vs['ours']) or 'none'}; by Evidently: "
        f"{', '.join(vs['evidently'] or []) or 'none'}; same on the shifted columns: "
        f"{vs['same_on_shifted']}; false flags ours/Evidently: "
        f"{vs['false_ours']}/{vs['false_evidently']}"
    )
    if report.get("ingestion_median_rows_per_s"):
        med = report["ingestion_median_rows_per_s"]
        lines.append(
            "\ningestion, median rows/s: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in med.items())
            + " (target ≥ 50,000)"
        )
    if report.get("ingestion"):
        lines += [
            "",
            "| ingestion | rows | Monitor.run_once | rows/s | windows closed | log write rows/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in report["ingestion"]:
            lines.append(
                f"| {r['backend']} {r['mode']} #{r['round'] + 1} | {r['rows']:,} | "
                f"{fmt_s(r['run_once_s'])} | "
                f"{r['rows_per_s']:,.0f} | {r['windows_closed']} | "
                f"{r['write']['write_rows_per_s']:,.0f} |"
            )
    return "\n".join(lines)


def ingestion_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for r in runs:
        groups.setdefault(f"{r['backend']} {r['mode']}", []).append(r["rows_per_s"])
    return {k: statistics.median(v) for k, v in groups.items()}


def median_ours(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(f: Any) -> Any:
        vals = [f(r) for r in runs]
        return statistics.median(vals) if all(v is not None for v in vals) else None

    fl = "fold_log" in runs[0]
    return {
        "fold_arrays_s": med(lambda r: r["fold_arrays"]["total_s"]),
        "fold_numeric_s": med(lambda r: r["fold_arrays"]["numeric_s"]),
        "fold_categorical_s": med(lambda r: r["fold_arrays"]["categorical_s"]),
        "fold_log_s": med(lambda r: r["fold_log"]["total_s"]) if fl else None,
        "fold_log_decode_s": med(lambda r: r["fold_log"]["decode_s"]) if fl else None,
        "fold_log_fold_s": med(lambda r: r["fold_log"]["fold_s"]) if fl else None,
        "fold_log_rows": runs[0]["fold_log"]["rows"] if fl else None,
        "fold_log_rows_per_s": med(lambda r: r["fold_log"]["rows_per_s"]) if fl else None,
        "check_s": med(lambda r: r["check_s"]),
        "check_merged2_s": med(lambda r: r["check_merged2_s"]),
        "check_merged2_prepared_s": med(lambda r: r["check_merged2_prepared_s"]),
        "prepare_s": med(lambda r: r["prepare_s"]),
        "calibrate_s": med(lambda r: r["calibrate_s"]),
        "drift_s": med(lambda r: r["fold_arrays"]["total_s"] + r["check_s"]),
        "peak_rss_mib": med(lambda r: r["peak_rss_mib"]),
        "rss_after_data_mib": med(lambda r: r["rss_after_data_mib"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="current window rows")
    ap.add_argument("--reference", type=int, default=100_000, help="reference rows")
    ap.add_argument("--log-rows", type=int, default=200_000, help="rows for the ingestion runs")
    ap.add_argument("--write-batch", type=int, default=1_000, help="rows per PredictionLog.write")
    ap.add_argument(
        "--decoded-rows",
        type=int,
        default=None,
        help="rows folded from JSON log rows (default: all --rows)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="runs of ours around Evidently's")
    ap.add_argument("--ingest-rounds", type=int, default=2, help="warm ingestion runs per backend")
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--no-ingestion", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="server to create (and drop) a fresh database on",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="run the warm monitor passes under py-spy (raw stacks to bench/results)",
    )
    ap.add_argument("--evidently-timeout", type=float, default=600)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    # internal: the subprocess workers
    ap.add_argument("--worker", choices=["ours", "monitor"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "ours":
        print(json.dumps(worker_ours(args.work, args.decoded_rows, 20)))
        return
    if args.worker == "monitor":
        print(json.dumps(worker_monitor(args.work, args.url, args.home, args.warm)))
        return
    if args.decoded_rows is None:
        args.decoded_rows = args.rows
    if not args.no_evidently and not EV_PY.exists():
        sys.exit(
            "bench/.venv-evidently is missing: run `bash bench/evidently/setup.sh` "
            "(or pass --no-evidently)"
        )

    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    out_path = args.out or results_dir / f"monitor-{dt.date.today().isoformat()}.json"
    work = Path(tempfile.mkdtemp(prefix="modelloop-monitor-bench-"))
    started = time.perf_counter()
    try:
        print(
            f"data: {args.reference:,} reference + {args.rows:,} current rows in {work}", flush=True
        )
        t0 = time.perf_counter()
        meta = make_data(work, args.reference, args.rows, args.seed)
        gen_s = time.perf_counter() - t0
        training = train(work, meta)
        print(
            f"  generated in {gen_s:.1f} s, trained v{training['version']} in "
            f"{training['train_s']:.1f} s",
            flush=True,
        )

        ours_runs: list[dict[str, Any]] = []
        ev = None
        for i in range(max(1, args.rounds)):
            ours_runs.append(run_ours(work, args))
            r = ours_runs[-1]
            print(
                f"  ours: fold {fmt_s(r['fold_arrays']['total_s'])}, check "
                f"{fmt_s(r['check_s'])}, calibrate {fmt_s(r['calibrate_s'])}, flagged "
                f"{r['flagged']}",
                flush=True,
            )
            if i == 0 and not args.no_evidently:
                ev = run_evidently(work, args.evidently_timeout)
                print(
                    f"  evidently: {ev['drift_s']:.1f} s, peak {ev['peak_rss_mib']:.0f} MiB, "
                    f"flagged {ev['flagged']}",
                    flush=True,
                )
        ours = {"runs": ours_runs, "median": median_ours(ours_runs)}
        o = ours["median"]
        ratios = None
        if ev:
            fold_log_check = (
                o["fold_log_s"] * args.rows / o["fold_log_rows"] + o["check_s"]
                if o["fold_log_s"]
                else None
            )
            ratios = {
                "time_vs_fold_arrays_and_check": ev["drift_s"] / o["drift_s"],
                "time_vs_fold_log_and_check": ev["drift_s"] / fold_log_check
                if fold_log_check
                else None,
                "time_vs_check": ev["drift_s"] / o["check_s"],
                "peak_rss": ev["peak_rss_mib"] / o["peak_rss_mib"],
            }
        shifted = set(meta["shifted"])
        ev_flagged = ev["flagged"] if ev else None
        feature_flags = [
            f for f in ours_runs[0]["flagged"] if f in meta["numeric"] + meta["categorical"]
        ]
        summary = {
            "ours": ours_runs[0]["flagged"],
            "ours_features": feature_flags,
            "evidently": ev_flagged,
            "same_on_shifted": None
            if ev_flagged is None
            else (
                {f for f in ev_flagged if f in shifted}
                == {f for f in feature_flags if f in shifted}
            ),
            "ours_caught_all_shifted": shifted <= set(feature_flags),
            "evidently_caught_all_shifted": None
            if ev_flagged is None
            else shifted <= set(ev_flagged),
            "false_ours": sorted(set(feature_flags) - shifted),
            "false_evidently": None if ev_flagged is None else sorted(set(ev_flagged) - shifted),
        }
        ingest = None
        if not args.no_ingestion:
            print(f"ingestion: {args.log_rows:,} log rows per backend", flush=True)
            ingest = ingestion(work, args, results_dir)

        import numpy as np
        import sklearn

        report = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, load avg "
            f"{os.getloadavg()[0]:.2f} at end",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "args": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k not in ("worker", "work", "url", "home", "warm")
            },
            "rows": args.rows,
            "reference_rows": args.reference,
            "shifted": meta["shifted"],
            "training": training,
            "ours": ours,
            "evidently": ev,
            "ratios": ratios,
            "verdicts": verdicts(meta, ours_runs[0], ev),
            "verdict_summary": summary,
            "ingestion": ingest,
            "ingestion_median_rows_per_s": ingestion_medians(ingest) if ingest else None,
            "total_s": time.perf_counter() - started,
        }
        out_path.write_text(json.dumps(report, indent=2))
        print()
        print(markdown(report))
        print(
            f"\nwrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}"
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
