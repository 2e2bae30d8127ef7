"""NannyML 0.13's CBPE on the windows bench/estimate_bench.py wrote (run in the NannyML venv).

    bench/.venv-nannyml/bin/python bench/nannyml/run_nannyml.py IN_DIR OUT.json

IN_DIR holds, per data set, `<name>.reference.csv` (the served model's test-split predictions
with labels: what CBPE is fitted on) and `<name>.analysis.csv` (the traffic, in windows of
`chunk` rows), and `datasets.json` (classes, problem type, chunk size). Writes per data set and
window NannyML's estimate and sampling error of accuracy, F1 and ROC AUC (CBPE), or of MAE and
RMSE (DLE, for a regression: the reference and analysis files then hold the features), and the
time of fit and estimate.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml
import pandas as pd

METRICS = ["accuracy", "f1", "roc_auc"]
REGRESSION_METRICS = ["mae", "rmse"]


def run_dle(folder: Path, name: str, spec: dict) -> dict:
    ref = pd.read_csv(folder / f"{name}.reference.csv")
    ana = pd.read_csv(folder / f"{name}.analysis.csv")
    est = nml.DLE(
        feature_column_names=spec["features"],
        y_pred="y_pred",
        y_true="y_true",
        metrics=REGRESSION_METRICS,
        chunk_size=spec["chunk"],
    )
    started = time.perf_counter()
    est.fit(ref)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    result = est.estimate(ana.drop(columns=["y_true"]))
    estimate_s = time.perf_counter() - started
    return _windows(result, REGRESSION_METRICS, fit_s, estimate_s)


def _windows(result: object, metrics: list[str], fit_s: float, estimate_s: float) -> dict:
    df = result.filter(period="analysis").to_df()  # type: ignore[attr-defined]
    windows = []
    for i in range(len(df)):
        start, end = df[("chunk", "start_index")].iloc[i], df[("chunk", "end_index")].iloc[i]
        row = {"rows": int(end - start + 1)}
        for m in metrics:
            row[m] = float(df[(m, "value")].iloc[i])
            row[f"{m}_stderr"] = float(df[(m, "sampling_error")].iloc[i])
        windows.append(row)
    return {
        "windows": windows,
        "fit_seconds": fit_s,
        "estimate_seconds": estimate_s,
        "estimate_ms_per_window": 1000 * estimate_s / max(len(windows), 1),
    }


def run(folder: Path, name: str, spec: dict) -> dict:
    ref = pd.read_csv(folder / f"{name}.reference.csv")
    ana = pd.read_csv(folder / f"{name}.analysis.csv")
    classes = spec["classes"]
    if len(classes) == 2:
        proba: str | dict[str, str] = f"p_{classes[1]}"
        problem = "classification_binary"
    else:
        proba = {c: f"p_{c}" for c in classes}
        problem = "classification_multiclass"
    for frame in (ref, ana):
        for col in ("y_pred", "y_true"):
            text = frame[col].astype(str)
            # binary CBPE takes 0/1 labels (class 1 is the positive one), multiclass the names
            frame[col] = (text == classes[1]).astype(int) if len(classes) == 2 else text
    est = nml.CBPE(
        y_pred_proba=proba,
        y_pred="y_pred",
        y_true="y_true",
        problem_type=problem,
        metrics=METRICS,
        chunk_size=spec["chunk"],
    )
    started = time.perf_counter()
    est.fit(ref)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    result = est.estimate(ana.drop(columns=["y_true"]))
    estimate_s = time.perf_counter() - started
    return _windows(result, METRICS, fit_s, estimate_s)


def main() -> None:
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    specs = json.loads((folder / "datasets.json").read_text())
    results = {
        name: (run_dle if spec.get("task") == "regression" else run)(folder, name, spec)
        for name, spec in specs.items()
    }
    results["_versions"] = {"nannyml": nml.__version__, "pandas": pd.__version__}
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
