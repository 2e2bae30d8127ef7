"""Evidently's side of bench/monitor_bench.py: DataDriftPreset on the bench's data, one run.

    DO_NOT_TRACK=1 bench/.venv-evidently/bin/python bench/evidently/run_evidently.py DATA_DIR

DATA_DIR holds data.npz and meta.json as bench/monitor_bench.py writes them (reference and
current: numeric columns as float64 matrices, categorical columns as integer codes into each
column's category names). Prints one JSON object on its last line: timings (data loading apart
from the drift run), peak RSS, and per column the method, score, threshold and verdict.
"""

import os

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently sends telemetry unless this is set

import json
import resource
import sys
import time
from pathlib import Path


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    data_dir = Path(sys.argv[1])
    t0 = time.perf_counter()
    import evidently
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    t_import = time.perf_counter() - t0

    t0 = time.perf_counter()
    meta = json.loads((data_dir / "meta.json").read_text())
    arrays = np.load(data_dir / "data.npz")
    num_names, cat_names = meta["numeric"], meta["categorical"]
    cats = [np.array(c, dtype=object) for c in meta["categories"]]

    def frame(prefix: str) -> pd.DataFrame:
        num, codes = arrays[f"{prefix}_num"], arrays[f"{prefix}_cat"]
        cols: dict[str, object] = {n: num[:, i] for i, n in enumerate(num_names)}
        cols.update({n: cats[j][codes[:, j]] for j, n in enumerate(cat_names)})
        return pd.DataFrame(cols)

    ref, cur = frame("ref"), frame("cur")
    arrays.close()
    t_load = time.perf_counter() - t0
    rss_data = rss_mib()

    t0 = time.perf_counter()
    definition = DataDefinition(numerical_columns=num_names, categorical_columns=cat_names)
    cur_ds = Dataset.from_pandas(cur, data_definition=definition)
    ref_ds = Dataset.from_pandas(ref, data_definition=definition)
    t_dataset = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(cur_ds, ref_ds)
    t_run = time.perf_counter() - t0

    t0 = time.perf_counter()
    out = snapshot.dict()
    t_extract = time.perf_counter() - t0

    columns: dict[str, dict[str, object]] = {}
    for m in out["metrics"]:
        cfg = m["config"]
        if cfg.get("type") == "evidently:metric_v2:ValueDrift":
            columns[cfg["column"]] = {
                "method": cfg.get("method"),
                "threshold": cfg.get("threshold"),
                "score": m["value"],
            }
    for t in out["tests"]:
        col = t.get("metric_config", {}).get("params", {}).get("column")
        if col in columns and t.get("id") == "drift":
            columns[col]["drifted"] = t["status"] == "FAIL"
    flagged = sorted(c for c, v in columns.items() if v.get("drifted"))
    result = {
        "evidently": evidently.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "columns_checked": len(columns),
        "import_s": t_import,
        "load_s": t_load,
        "dataset_s": t_dataset,
        "report_run_s": t_run,
        "extract_s": t_extract,
        "drift_s": t_dataset + t_run + t_extract,
        "rss_after_data_mib": rss_data,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "flagged": flagged,
        "columns": columns,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
