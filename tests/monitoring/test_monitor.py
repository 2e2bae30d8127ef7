"""The monitor worker against a real database (SQLite and PostgreSQL) and a real registry:
incremental ingestion that survives restarts, shift detection per window, the trigger rule."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from modelloop.monitoring.metrics import MonitorMetrics
from modelloop.monitoring.settings import MonitorSettings
from modelloop.monitoring.worker import Monitor
from modelloop.store.database import Database
from modelloop.store.errors import StoreError
from modelloop.store.jobs import JobQueue
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.registry import FolderRegistry, Registry
from modelloop.store.reports import DriftReports, MonitorStates
from modelloop.store.schema import prediction_batches
from modelloop.training import synthetic
from modelloop.training.export import OnnxModel

MODEL = "default"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelloop.training.pipeline import TrainRequest, run_training

    root = tmp_path_factory.mktemp("monitor-registry")
    run_training(TrainRequest(model=MODEL, rows=20_000, estimator="logreg"), FolderRegistry(root))
    return root


@pytest.fixture
def registry(trained: Path, tmp_path: Path) -> Registry:
    import shutil

    shutil.copytree(trained, tmp_path / "registry")
    return FolderRegistry(tmp_path / "registry")


class Traffic:
    """Log rows as the service writes them: raw features and the model's real outputs."""

    def __init__(self, registry: Registry, db: Database) -> None:
        self.meta = registry.metadata(MODEL, 1)
        self.model = OnnxModel.load(
            registry.onnx_bytes(MODEL, 1), self.meta.features, "classification"
        )
        self.log = PredictionLog(db)
        self.count = 0

    def send(self, frame: pd.DataFrame, ts: float | None = None) -> list[str]:
        x = frame[self.meta.feature_names].copy()
        for f in self.meta.features:
            if f.kind == "categorical":
                x[f.name] = x[f.name].fillna("")
        labels, proba = self.model.predict(x)
        assert proba is not None
        rows: list[LogRow] = []
        now = ts if ts is not None else time.time() - 60
        for rec, label, p in zip(
            frame[self.meta.feature_names].to_dict("records"), labels, proba, strict=True
        ):
            feats = {
                k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()
            }
            self.count += 1
            rows.append(
                {
                    "id": f"t-{self.count}",
                    "ts": now,
                    "model": MODEL,
                    "version": 1,
                    "features": feats,
                    "output": {
                        "label": str(label),
                        "probabilities": {"no": float(p[0]), "yes": float(p[1])},
                    },
                    "latency_ms": 1.0,
                }
            )
        for start in range(0, len(rows), 250):  # the service's batches: one record each
            self.log.write(rows[start : start + 250])
        return [r["id"] for r in rows]


def monitor(db: Database, registry: Registry, **over: object) -> Monitor:
    settings = MonitorSettings(home=registry.root.parent, settle_seconds=0.0, **over)  # type: ignore[arg-type]
    return Monitor(settings, db, registry, MonitorMetrics(CollectorRegistry()))


def reports(db: Database) -> list[dict[str, object]]:
    return list(reversed(DriftReports(db).list(MODEL, limit=10_000)))


def test_restart_resumes_without_double_counting(db: Database, registry: Registry) -> None:
    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(2500, 1))
    first = monitor(db, registry)
    first.run_once()
    ctx = first.contexts[MODEL]
    assert ctx.window.rows == 500  # two windows of 1,000 closed, 500 rows waiting
    traffic.send(synthetic.generate(2500, 2))
    second = monitor(db, registry)  # a restart: state comes back from the database
    second.run_once()
    got = reports(db)
    assert [r["rows"] for r in got] == [1000] * 5
    assert second.contexts[MODEL].window.rows == 0
    # the watermark names records: 2,500 rows are 10 of them
    assert second.contexts[MODEL].watermark == first.contexts[MODEL].watermark + 10


def test_a_pass_cut_short_after_closing_windows_stores_nothing(
    db: Database, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A monitor that dies after closing windows but before saving its state (here: the live
    metrics query fails, as a kill there would stop it) must not leave those windows' reports
    behind: the restarted monitor reads the rows again from its watermark and judges them."""
    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(2500, 1))
    first = monitor(db, registry)

    def dies(ctx: object) -> None:
        raise StoreError("the process is gone")

    monkeypatch.setattr(first, "_live", dies)
    first.run_once()
    assert first.contexts[MODEL].window.rows == 500  # it did read and close two windows
    assert reports(db) == []
    assert MonitorStates(db).get(MODEL) is None
    second = monitor(db, registry)  # the restart
    second.run_once()
    assert [r["rows"] for r in reports(db)] == [1000, 1000]
    state = MonitorStates(db).get(MODEL)
    assert state is not None
    assert state.data["window"]["rows"] == 500
    assert state.watermark == first.contexts[MODEL].watermark


def _first_flags(db: Database, feature: str) -> list[bool]:
    return [feature in r["report"]["flagged"] for r in reports(db)]  # type: ignore[index]


@pytest.mark.parametrize(
    ("shift", "feature"),
    [
        (synthetic.Shift(numeric={"tenure_months": 0.25}), "tenure_months"),
        (synthetic.Shift(categorical={"region": ("west", 0.10)}), "region"),
    ],
)
def test_shift_is_flagged_within_two_windows(
    db: Database, registry: Registry, shift: synthetic.Shift, feature: str
) -> None:
    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(5000, 11))
    traffic.send(synthetic.generate(2000, 12, shift))
    monitor(db, registry).run_once()
    flags = _first_flags(db, feature)
    assert len(flags) == 7
    assert not any(flags[:5]), flags  # steady windows
    assert flags[5] or flags[6], flags  # the first two shifted windows


def test_steady_traffic_raises_no_flag_and_no_retrain(db: Database, registry: Registry) -> None:
    traffic = Traffic(registry, db)
    for seed in range(20):
        traffic.send(synthetic.generate(10_000, 100 + seed))
    mon = monitor(db, registry)
    started = time.perf_counter()
    mon.run_once()
    elapsed = time.perf_counter() - started
    got = reports(db)
    assert len(got) == 200
    flagged = [r["report"]["flagged"] for r in got if r["verdict"] == "drift"]  # type: ignore[index]
    assert flagged == []
    assert mon.contexts[MODEL].rule.state == "ok"
    assert JobQueue(db).list(MODEL) == []
    assert elapsed < 120  # a sanity bound only; the ingestion rate is measured in bench/


def test_persistent_drift_queues_one_retrain_with_an_audit_event(
    db: Database, registry: Registry
) -> None:
    from modelloop.store.events import Events

    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(4000, 21, synthetic.Shift(numeric={"tenure_months": 1.0})))
    mon = monitor(db, registry)
    mon.run_once()
    jobs = JobQueue(db).list(MODEL)
    assert len(jobs) == 1
    assert jobs[0].trigger == "drift"
    assert "tenure_months" in jobs[0].reason
    assert mon.contexts[MODEL].rule.state == "retraining"
    traffic.send(synthetic.generate(4000, 22, synthetic.Shift(numeric={"tenure_months": 1.0})))
    mon.run_once()
    assert len(JobQueue(db).list(MODEL)) == 1  # at most one retrain per model
    triggers = Events(db).list(MODEL, kind="trigger")
    assert len(triggers) == 1
    assert "tenure_months" in triggers[0]["details"]["flagged"]


def test_falling_live_accuracy_queues_a_retrain(db: Database, registry: Registry) -> None:
    traffic = Traffic(registry, db)
    frame = synthetic.generate(1000, 31, synthetic.Shift(concept=1))
    ids = traffic.send(frame)
    PredictionLog(db).add_feedback(zip(ids, frame[synthetic.TARGET], strict=True))
    mon = monitor(db, registry, min_labels=200)
    mon.run_once()
    ctx = mon.contexts[MODEL]
    assert ctx.live_labels == 1000
    assert ctx.live["accuracy"] < 0.5
    jobs = JobQueue(db).list(MODEL)
    assert [j.trigger for j in jobs] == ["performance"]


def test_the_monitor_applies_the_retention_setting(db: Database, registry: Registry) -> None:
    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(1500, 5))
    worker = monitor(db, registry, retention_rows=400, retention_interval=3600.0)
    worker.run_once()
    worker.prune()
    # whole records of 250 go while more than 400 rows remain
    assert PredictionLog(db).count(MODEL) == 250
    assert worker.metrics.pruned.labels("predictions")._value.get() == 1250
    traffic.send(synthetic.generate(600, 6))
    worker.prune()  # within the interval: nothing happens
    assert PredictionLog(db).count(MODEL) == 850
    # what was read before the deletion still counts: the windows closed on all 1,500 rows
    assert sum(r["rows"] for r in reports(db)) == 1000  # type: ignore[misc]
    assert worker.contexts[MODEL].window.rows == 500


def test_one_noise_calibration_per_model(db: Database, registry: Registry) -> None:
    """A calibration is ~1 MiB: the one of a version no longer judged against is dropped."""
    mon = monitor(db, registry)
    ref = registry.reference(MODEL, 1)
    first = mon._calibration(MODEL, 1, ref)
    assert mon._calibration(MODEL, 1, ref) is first
    mon._calibration("other", 1, ref)
    mon._calibration(MODEL, 2, ref)
    assert set(mon._calibrations) == {("other", 1), (MODEL, 2)}


def test_other_versions_batches_are_skipped_and_windows_split_batches(
    db: Database, registry: Registry
) -> None:
    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(1100, 1))  # five records: the last one ends in window 2
    rows: list[LogRow] = [
        {
            "id": f"v2-{i}",
            "ts": 1.0,
            "model": MODEL,
            "version": 2,
            "features": {"nothing": None},
            "output": {"label": "yes"},
            "latency_ms": 1.0,
        }
        for i in range(300)
    ]
    PredictionLog(db).write(rows)
    traffic.send(synthetic.generate(1400, 2))
    m = monitor(db, registry, chunk_rows=600)  # chunks of whole records, 750 rows each
    m.run_once()
    ctx = m.contexts[MODEL]
    assert [r["rows"] for r in reports(db)] == [1000, 1000]  # version 2's 300 rows not judged
    assert ctx.window.rows == 500
    with db.engine.connect() as conn:
        last = conn.execute(select(func.max(prediction_batches.c.seq))).scalar_one()
    assert ctx.watermark == last
