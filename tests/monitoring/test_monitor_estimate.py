"""The estimated performance in the monitor worker, on a real database (SQLite and PostgreSQL)
and a real registry: stored in each window's drift report, exported, a retrain asked for on an
estimated drop (no label sent), and benign drift told apart."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from modelloop.monitoring.metrics import MonitorMetrics
from modelloop.monitoring.settings import MonitorSettings
from modelloop.monitoring.worker import Monitor
from modelloop.store.database import Database
from modelloop.store.events import Events
from modelloop.store.jobs import JobQueue
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.registry import FolderRegistry, Registry
from modelloop.store.reports import DriftReports
from modelloop.training import synthetic

from .estimate_world import Served, resample

MODEL = "default"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelloop.training.pipeline import TrainRequest, run_training

    root = tmp_path_factory.mktemp("estimate-monitor-registry")
    run_training(TrainRequest(model=MODEL, rows=20_000, estimator="logreg"), FolderRegistry(root))
    return root


@pytest.fixture
def registry(trained: Path, tmp_path: Path) -> Registry:
    import shutil

    shutil.copytree(trained, tmp_path / "registry")
    return FolderRegistry(tmp_path / "registry")


def send(registry: Registry, db: Database, frame: pd.DataFrame, start: int = 0) -> list[str]:
    served = Served.load(registry, MODEL)
    outs, _, _ = served.outputs(frame)
    rows: list[LogRow] = []
    now = time.time() - 60
    for i, (rec, out) in enumerate(
        zip(frame[served.meta.feature_names].to_dict("records"), outs, strict=True)
    ):
        feats = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
        rows.append(
            {
                "id": f"e-{start + i}",
                "ts": now,
                "model": MODEL,
                "version": 1,
                "features": feats,
                "output": out,
                "latency_ms": 1.0,
            }
        )
    PredictionLog(db).write(rows)
    return [r["id"] for r in rows]


def monitor(db: Database, registry: Registry, **over: object) -> Monitor:
    settings = MonitorSettings(home=registry.root.parent, settle_seconds=0.0, **over)  # type: ignore[arg-type]
    return Monitor(settings, db, registry, MonitorMetrics(CollectorRegistry()))


def reports(db: Database) -> list[dict[str, object]]:
    return list(reversed(DriftReports(db).list(MODEL, limit=10_000)))


def hard_rows(registry: Registry, n: int, seed: int) -> pd.DataFrame:
    """A covariate shift that hurts: rows resampled towards the decision boundary."""
    pool = synthetic.generate(40_000, seed)
    _, _, proba = Served.load(registry, MODEL).outputs(pool)
    return resample(pool, np.exp(-12 * np.abs(proba[:, 1] - 0.5)), n, seed + 1)


def test_steady_traffic_stores_and_exports_an_estimate_close_to_the_realized(
    db: Database, registry: Registry
) -> None:
    frame = synthetic.generate(5000, 61)
    ids = send(registry, db, frame)
    PredictionLog(db).add_feedback(zip(ids, frame[synthetic.TARGET], strict=True))
    mon = monitor(db, registry, window_rows=5000, merge_windows=1, live_rows=5000)
    mon.run_once()
    (got,) = reports(db)
    report = got["report"]
    assert isinstance(report, dict)
    est = report["estimate"]
    assert est["method"] == "cbpe"
    assert est["metric"] == "accuracy"
    assert est["dropped"] is False
    assert report["benign_drift"] is False
    value, stderr = est["latest"]["metrics"]["accuracy"]
    live = mon.contexts[MODEL].live["accuracy"]
    assert abs(value - live) < 0.02
    assert 0.003 < stderr < 0.01
    assert set(est["latest"]["per_class"]) == {"no", "yes"}
    gauge = mon.metrics.registry.get_sample_value(
        "modelloop_estimated_metric", {"model": MODEL, "version": "1", "metric": "accuracy"}
    )
    assert gauge == pytest.approx(value)
    auc_se = mon.metrics.registry.get_sample_value(
        "modelloop_estimated_metric_stderr", {"model": MODEL, "version": "1", "metric": "roc_auc"}
    )
    assert auc_se is not None
    assert 0 < auc_se < 0.02
    assert JobQueue(db).list(MODEL) == []
    from modelloop.monitoring.report_page import render

    html = render(MODEL, registry, db)
    assert "Performance over time: estimated (no labels) and realized" in html
    assert 'class="band"' in html  # the estimate's ±2 s.e. band, beside the live line
    assert f"<td>accuracy</td><td>{value:.4f}</td><td>{stderr:.4f}</td>" in html
    assert "<th>live (feedback)</th>" in html
    assert "the estimated primary metric holds" in html


def test_an_estimated_drop_asks_for_a_retrain_without_labels(
    db: Database, registry: Registry
) -> None:
    send(registry, db, synthetic.generate(2000, 62))
    send(registry, db, hard_rows(registry, 3000, 63), start=2000)
    mon = monitor(db, registry)
    mon.run_once()
    got = reports(db)
    dropped = [r["report"]["estimate"]["dropped"] for r in got]  # type: ignore[index]
    assert dropped[:2] == [False, False]
    assert all(dropped[3:])
    jobs = JobQueue(db).list(MODEL)
    assert [j.trigger for j in jobs] == ["estimated_performance"]
    assert "waits for labels of predictions made since" in jobs[0].reason
    assert "0 labelled" in jobs[0].reason
    (event,) = Events(db).list(MODEL, kind="trigger")
    assert event["details"]["reason"] == "estimated_performance"
    assert event["details"]["estimate"] < event["details"]["baseline"] - 0.1
    assert mon.contexts[MODEL].rule.state == "retraining"


@pytest.mark.parametrize("policy", ["always", "unless_benign"])
def test_benign_drift_is_reported_and_retrains_only_if_asked(
    db: Database, registry: Registry, policy: str
) -> None:
    """30 points more of region=west: the feature drifts, the accuracy holds."""
    send(registry, db, synthetic.generate(2000, 64))
    benign = synthetic.Shift(categorical={"region": ("west", 0.30)})
    send(registry, db, synthetic.generate(3000, 65, benign), start=2000)
    mon = monitor(db, registry, drift_retrain=policy)
    mon.run_once()
    got = reports(db)
    shifted = [r["report"] for r in got[3:]]
    assert all(r["verdict"] == "drift" for r in got[3:])  # type: ignore[index]
    assert all(r["benign_drift"] for r in shifted)  # type: ignore[index]
    assert not any(r["estimate"]["dropped"] for r in shifted)  # type: ignore[index]
    jobs = JobQueue(db).list(MODEL)
    assert [j.trigger for j in jobs] == (["drift"] if policy == "always" else [])
