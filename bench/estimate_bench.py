"""Label-free estimates against the realized metrics, side by side with NannyML 0.13's CBPE.

Two data sets, each trained by the real pipeline (HistGradientBoosting, the default): the
synthetic churn data (binary) and a three-class `make_classification`. Traffic, in windows of
5,000 rows: steady; a covariate shift (churn: `tenure_months` +0.5 std, as `modelloop simulate
--shift covariate` sends it; three classes: rows resampled with weight exp(0.8 x0) from a pool
of the same draw as the training rows); and a covariate shift that hurts (rows resampled
towards the decision boundary, P(y | x) unchanged).
For every window: the realized accuracy, F1 and ROC AUC from the labels, modelloop's estimate
(folded as the monitor folds, estimated from the window's aggregates) and NannyML's CBPE
(fitted on the served model's labelled test split, in its own venv: bench/nannyml/setup.sh).

    bash bench/nannyml/setup.sh                       # once: bench/.venv-nannyml
    .venv/bin/python bench/estimate_bench.py           # -> bench/results/estimate-<date>.json
    .venv/bin/python bench/estimate_bench.py --no-nannyml --windows 2   # quick, ours only

F1: for two classes NannyML's `f1` is the positive class's, compared with modelloop's F1 of that
class; for three, both are macro. Cost: modelloop's estimate from a window's aggregates (what
the monitor does per window), its fold of 5,000 logged outputs into them (part of ingestion),
and NannyML's `estimate` per window (its `fit` apart).
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.datasets import make_classification

from modelloop.monitoring.estimate.estimator import Estimator
from modelloop.monitoring.window import Folder, Window
from modelloop.store.metadata import ModelMetadata
from modelloop.store.registry import FolderRegistry, Registry
from modelloop.training import synthetic
from modelloop.training.clean import clean
from modelloop.training.export import OnnxModel
from modelloop.training.pipeline import TrainRequest, gather, run_training
from modelloop.training.prepare import split

ROOT = Path(__file__).resolve().parent
METRICS = ("accuracy", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse")


@dataclass
class Served:
    meta: ModelMetadata
    model: OnnxModel
    folder: Folder
    estimator: Estimator
    classes: list[str]

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = frame[self.meta.feature_names].copy()
        for f in self.meta.features:
            if f.kind == "categorical":
                x[f.name] = x[f.name].fillna("").astype(str)
        pred, proba = self.model.predict(x)
        if proba is None:  # a regression: the values, twice
            return pred, pred[:, None]
        return pred.astype(str), proba

    def window(self, frame: pd.DataFrame) -> tuple[Window, np.ndarray, np.ndarray, list[Any]]:
        pred, proba = self.predict(frame)
        outs: list[dict[str, Any]] = (
            [{"value": float(v)} for v in pred]
            if not self.classes
            else [
                {"label": lb, "probabilities": dict(zip(self.classes, map(float, p), strict=True))}
                for lb, p in zip(pred, proba, strict=True)
            ]
        )
        feats = [
            {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
            for rec in frame[self.meta.feature_names].to_dict("records")
        ]
        return self.folder.fold(feats, outs, [0.0] * len(outs)), pred, proba, outs


def _served(registry: Registry, name: str) -> Served:
    meta = registry.metadata(name, 1)
    ref = registry.reference(name, 1)
    model = OnnxModel.load(registry.onnx_bytes(name, 1), meta.features, meta.task)
    return Served(meta, model, Folder(meta, ref), Estimator(meta), [str(c) for c in meta.classes])


def _resample(pool: pd.DataFrame, weights: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pool), size=n, replace=True, p=weights / weights.sum())
    return pool.iloc[idx].reset_index(drop=True)


def _three_classes(rows: int) -> pd.DataFrame:
    """One draw of a three-class problem (its class centres depend on the random state, so the
    training rows and the traffic pool are cut from the same draw)."""
    x, y = make_classification(
        n_samples=rows,
        n_features=8,
        n_informative=5,
        n_redundant=1,
        n_classes=3,
        n_clusters_per_class=1,
        flip_y=0.05,
        class_sep=0.8,
        random_state=1,
    )
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    frame["kind"] = np.array(["alpha", "beta", "gamma"])[y]
    return frame


def _hetero(rows: int, seed: int) -> pd.DataFrame:
    """A regression whose noise grows with |x0| and at site b."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 3))
    site = rng.choice(np.array(["a", "b"], dtype=object), rows, p=[0.7, 0.3])
    noise = (0.5 + np.abs(x[:, 0]) + 1.0 * (site == "b")) * rng.normal(0, 1, rows)
    y = 3 * x[:, 0] + 2 * np.sin(x[:, 1]) + x[:, 2] + noise
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "site": site, "y": y})


THREE = _three_classes(200_000)
THREE_TRAIN, THREE_POOL = THREE.iloc[:20_000], THREE.iloc[20_000:].reset_index(drop=True)


def _realized(served: Served, y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> dict:
    classes = served.classes
    if not classes:
        err = y.astype(np.float64) - pred
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}
    if len(classes) == 2:
        f1 = skm.f1_score(y, pred, pos_label=classes[1], average="binary")
        auc = skm.roc_auc_score(y == classes[1], proba[:, 1])
    else:
        f1 = skm.f1_score(y, pred, average="macro", labels=classes)
        auc = skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
    return {"accuracy": float(np.mean(y == pred)), "f1": float(f1), "roc_auc": float(auc)}


def _ours(served: Served, est: dict) -> dict:
    m = est["metrics"]
    if not served.classes:
        return {
            "mae": m["mae"][0],
            "mae_stderr": m["mae"][1],
            "rmse": m["rmse"][0],
            "rmse_stderr": m["rmse"][1],
        }
    f1 = est["per_class"][served.classes[1]]["f1"] if len(served.classes) == 2 else m["f1_macro"]
    return {
        "accuracy": m["accuracy"][0],
        "accuracy_stderr": m["accuracy"][1],
        "f1": f1[0],
        "f1_stderr": f1[1],
        "roc_auc": m["roc_auc"][0],
        "roc_auc_stderr": m["roc_auc"][1],
    }


def _cost_us(served: Served, window: Window, outs: list[Any], repeat: int) -> tuple[float, float]:
    served.estimator.estimate(window)
    started = time.perf_counter()
    for _ in range(repeat):
        served.estimator.estimate(window)
    estimate_us = 1e6 * (time.perf_counter() - started) / repeat
    if served.folder.scores is None:  # DLE reads the drift counts: nothing more to fold
        return estimate_us, 0.0
    started = time.perf_counter()
    served.folder.scores.fold(outs)
    fold_us = 1e6 * (time.perf_counter() - started)
    return estimate_us, fold_us


def _nannyml_frame(
    served: Served, x: pd.DataFrame, pred: np.ndarray, proba: np.ndarray, y: np.ndarray
) -> pd.DataFrame:
    """What NannyML is given: probabilities (CBPE), or the features as numbers (DLE)."""
    if served.classes:
        cols = {f"p_{c}": proba[:, i] for i, c in enumerate(served.classes)}
        return pd.DataFrame({**cols, "y_pred": pred, "y_true": y})
    feats = {
        f.name: x[f.name].to_numpy(dtype=np.float64)
        for f in served.meta.features
        if f.kind == "numeric"
    }
    for f in served.meta.features:
        if f.kind == "categorical":
            for c in f.categories[1:]:  # one-hot, the first category dropped
                feats[f"{f.name}_{c}"] = (x[f.name].astype(str) == c).to_numpy(dtype=np.float64)
    return pd.DataFrame({**feats, "y_pred": pred, "y_true": y})


def build(
    registry: Registry, work: Path, rows: int, only: list[str] | None = None
) -> dict[str, tuple[Served, TrainRequest]]:
    csv = work / "three.csv"
    THREE_TRAIN.to_csv(csv, index=False)
    hetero = work / "hetero.csv"
    _hetero(20_000, 1).to_csv(hetero, index=False)
    requests = {
        "churn": TrainRequest(model="churn", rows=20_000),
        "three_classes": TrainRequest(model="three", data=csv, target="kind"),
        "regression": TrainRequest(model="hetero", data=hetero, target="y", task="regression"),
    }
    out = {}
    for name, req in requests.items():
        if only and name not in only:
            continue
        started = time.perf_counter()
        run_training(req, registry)
        print(f"trained {name} in {time.perf_counter() - started:.1f} s", flush=True)
        out[name] = (_served(registry, req.model), req)
    return out


def scenarios(name: str, served: Served, rows: int, seed: int) -> dict[str, pd.DataFrame]:
    if name == "churn":
        pool = synthetic.generate(max(4 * rows, 60_000), seed + 1)
        _, proba = served.predict(pool)
        return {
            "steady": synthetic.generate(rows, seed),
            "covariate: tenure_months +0.5 std": synthetic.generate(
                rows, seed + 2, synthetic.Shift(numeric={"tenure_months": 0.5})
            ),
            "covariate that hurts: towards the boundary": _resample(
                pool, np.exp(-12 * np.abs(proba[:, 1] - 0.5)), rows, seed + 3
            ),
        }
    if name == "regression":
        pool = _hetero(200_000, seed + 21)
        return {
            "steady": _resample(pool, np.ones(len(pool)), rows, seed + 22),
            "covariate: weight exp(0.5 |x0|) (noisier rows)": _resample(
                pool, np.exp(0.5 * np.abs(pool["x0"].to_numpy())), rows, seed + 23
            ),
            "covariate: site b 30 % -> 60 % (noisier rows)": _resample(
                pool, np.where(pool["site"] == "b", 3.5, 1.0), rows, seed + 24
            ),
        }
    pool = THREE_POOL
    _, proba = served.predict(pool)
    return {
        "steady": _resample(pool, np.ones(len(pool)), rows, seed + 12),
        "covariate: weight exp(0.8 x0)": _resample(
            pool, np.exp(0.8 * pool["x0"].to_numpy()), rows, seed + 13
        ),
        "covariate that hurts: towards the boundary": _resample(
            pool, np.exp(-8 * proba.max(axis=1)), rows, seed + 14
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--window-rows", type=int, default=5000)
    p.add_argument("--windows", type=int, default=4, help="windows per scenario")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--no-nannyml", action="store_true")
    p.add_argument("--nannyml-python", default=str(ROOT / ".venv-nannyml" / "bin" / "python"))
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--datasets", nargs="+", choices=("churn", "three_classes", "regression"), help="only these"
    )
    args = p.parse_args()
    n = args.window_rows
    rows = n * args.windows
    work = Path(tempfile.mkdtemp(prefix="estimate-bench-"))
    registry = FolderRegistry(work / "registry")
    models = build(registry, work, rows, args.datasets)
    results: dict[str, Any] = {"datasets": {}}
    nml_specs: dict[str, Any] = {}
    for name, (served, req) in models.items():
        per: list[dict[str, Any]] = []
        analysis = []
        for scenario, frame in scenarios(name, served, rows, args.seed).items():
            target = req.target or synthetic.TARGET
            for w in range(args.windows):
                part = frame.iloc[w * n : (w + 1) * n].reset_index(drop=True)
                window, pred, proba, outs = served.window(part)
                est = served.estimator.estimate(window)
                assert est is not None
                y = (
                    part[target].to_numpy()
                    if not served.classes
                    else part[target].astype(str).to_numpy()
                )
                estimate_us, fold_us = _cost_us(served, window, outs, 200)
                per.append(
                    {
                        "scenario": scenario,
                        "window": w,
                        "rows": n,
                        "realized": _realized(served, y, pred, proba),
                        "modelloop": _ours(served, est),
                        "modelloop_estimate_us": estimate_us,
                        "modelloop_fold_us": fold_us,
                    }
                )
                analysis.append(_nannyml_frame(served, part, pred, proba, y))
        results["datasets"][name] = {
            "metrics": list(METRICS if served.classes else REGRESSION_METRICS),
            "classes": served.classes,
            "estimator": served.meta.estimator,
            "calibration": served.meta.estimation.calibration_figures.model_dump()
            if served.meta.estimation and served.meta.estimation.calibration_figures
            else None,
            "windows": per,
        }
        # NannyML's reference: the served model's test split, labelled (what it is fitted on)
        raw = gather(req)
        data = clean(raw.frame, raw.target, req.task, list(req.categorical), list(req.numeric))
        splits = split(data.frame, data.target, data.task, req.seed)
        pred, proba = served.predict(splits.x_test)
        y_test = splits.y_test.to_numpy() if not served.classes else splits.y_test.astype(str)
        ref = _nannyml_frame(served, splits.x_test, pred, proba, np.asarray(y_test))
        ref.to_csv(work / f"{name}.reference.csv", index=False)
        pd.concat(analysis, ignore_index=True).to_csv(work / f"{name}.analysis.csv", index=False)
        nml_specs[name] = {
            "classes": served.classes,
            "chunk": n,
            "task": served.meta.task,
            "features": [c for c in ref.columns if c not in ("y_pred", "y_true")],
        }
    (work / "datasets.json").write_text(json.dumps(nml_specs))
    if not args.no_nannyml:
        out = work / "nannyml.json"
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        started = time.perf_counter()
        proc = subprocess.run(
            [args.nannyml_python, str(ROOT / "nannyml" / "run_nannyml.py"), str(work), str(out)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"NannyML run failed:\n{proc.stderr[-3000:]}")
        print(f"NannyML ran in {time.perf_counter() - started:.1f} s", flush=True)
        nml = json.loads(out.read_text())
        results["nannyml"] = nml.pop("_versions")
        for name, got in nml.items():
            ds = results["datasets"][name]
            ds["nannyml_fit_seconds"] = got["fit_seconds"]
            ds["nannyml_estimate_ms_per_window"] = got["estimate_ms_per_window"]
            assert len(got["windows"]) == len(ds["windows"]), (name, len(got["windows"]))
            for mine, theirs in zip(ds["windows"], got["windows"], strict=True):
                assert theirs["rows"] == mine["rows"]
                mine["nannyml"] = {k: v for k, v in theirs.items() if k != "rows"}
    results["summary"] = summarize(results)
    results["meta"] = {
        "date": dt.date.today().isoformat(),
        "window_rows": n,
        "windows_per_scenario": args.windows,
        "seed": args.seed,
        "python": sys.version.split()[0],
    }
    print_table(results)
    path = args.out or ROOT / "results" / f"estimate-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ds in results["datasets"].items():
        by: dict[str, list[dict[str, Any]]] = {}
        for w in ds["windows"]:
            by.setdefault(w["scenario"], []).append(w)
        rows = {}
        for scenario, ws in by.items():
            row: dict[str, Any] = {}
            for m in ds["metrics"]:
                real = np.array([w["realized"][m] for w in ws])
                row[f"{m}_realized_mean"] = float(real.mean())
                for who in ("modelloop", "nannyml"):
                    if who not in ws[0]:
                        continue
                    err = np.abs(np.array([w[who][m] for w in ws]) - real)
                    row[f"{m}_{who}_mae"] = float(err.mean())
                    row[f"{m}_{who}_max"] = float(err.max())
                if "nannyml" in ws[0]:
                    # paired per window (both estimate the same rows): |ours| - |NannyML's|
                    diff = np.abs(np.array([w["modelloop"][m] for w in ws]) - real) - np.abs(
                        np.array([w["nannyml"][m] for w in ws]) - real
                    )
                    row[f"{m}_paired_diff_mean"] = float(diff.mean())
                    row[f"{m}_paired_diff_stderr"] = (
                        float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else None
                    )
            rows[scenario] = row
        est = np.array([w["modelloop_estimate_us"] for w in ds["windows"]])
        fold = np.array([w["modelloop_fold_us"] for w in ds["windows"]])
        out[name] = {
            "method": "dle" if not ds["classes"] else "cbpe",
            "scenarios": rows,
            "modelloop_estimate_us_median": float(np.median(est)),
            "modelloop_fold_us_median": float(np.median(fold)),
            "nannyml_estimate_ms_per_window": ds.get("nannyml_estimate_ms_per_window"),
        }
    return out


def print_table(results: dict[str, Any]) -> None:
    nml = "nannyml" in results
    for name, s in results["summary"].items():
        metrics = results["datasets"][name]["metrics"]
        print(f"\n{name}: |estimate - realized|, mean (max) over the windows")
        head = f"{'scenario':<44} {'metric':<9} {'realized':>8} {'modelloop':>16}"
        print(head + (f" {'NannyML':>16}" if nml else ""))
        for scenario, row in s["scenarios"].items():
            for m in metrics:
                line = (
                    f"{scenario:<44} {m:<9} {row[f'{m}_realized_mean']:8.4f} "
                    f"{row[f'{m}_modelloop_mae']:8.4f} ({row[f'{m}_modelloop_max']:.4f})"
                )
                if nml:
                    line += f" {row[f'{m}_nannyml_mae']:8.4f} ({row[f'{m}_nannyml_max']:.4f})"
                    se = row[f"{m}_paired_diff_stderr"]
                    line += f"  diff {row[f'{m}_paired_diff_mean']:+.4f}"
                    line += f" ± {se:.4f}" if se is not None else ""
                print(line)
        cost = (
            f"cost per window: modelloop estimate {s['modelloop_estimate_us_median']:.0f} µs "
            f"(fold of the window's outputs {s['modelloop_fold_us_median'] / 1000:.1f} ms)"
        )
        if s["nannyml_estimate_ms_per_window"] is not None:
            cost += f", NannyML estimate {s['nannyml_estimate_ms_per_window']:.0f} ms"
        print(cost)


if __name__ == "__main__":
    main()
