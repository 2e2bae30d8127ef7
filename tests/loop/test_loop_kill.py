"""Workers killed with SIGKILL, as real processes, on SQLite and PostgreSQL.

1. A trainer killed mid-training: no partial version is ever visible to a reader, the job is
   claimed again once its lease has run out (not before), and exactly one complete new version
   appears.
2. A monitor killed mid-ingestion and restarted: it resumes from its stored watermark and every
   logged row is counted exactly once in the windows it stores.
"""

import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from loop_helpers import MODEL, free_port, wait_for
from sqlalchemy import func, select

from conftest import fresh_home
from modelloop.store.database import Database
from modelloop.store.jobs import Job, JobQueue
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.log.writer import Writer
from modelloop.store.registry import FolderRegistry, Registry, sha256_bytes
from modelloop.store.reports import DriftReports, MonitorStates
from modelloop.store.schema import drift_reports, monitor_state
from modelloop.store.schema import prediction_batches as batches
from modelloop.training import synthetic
from modelloop.training.export import OnnxModel

LEASE = 8.0  # seconds; the trainer renews it every LEASE / 3
TRAINER_POLL = 0.5


class Worker:
    """`modelloop <command>` in its own process, its output in a log file."""

    def __init__(self, command: str, home: Path, env: dict[str, str], tag: str) -> None:
        self.command = command
        self.log_path = home / f"{command}-{tag}.log"
        exe = str(Path(sys.executable).with_name("modelloop"))
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [exe, command], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_id(self) -> str:
        """How a trainer names itself in the jobs table (`trainer@<host>:<pid>`)."""
        return f"trainer@{platform.node()}:{self.proc.pid}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), f"{self.command} exited {self.proc.returncode}:\n{self.log()[-4000:]}"

    def sigkill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for w in started:
            w.stop()


def worker_env(home: Path, db_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
    env.update(
        {
            "MODELLOOP_HOME": str(home),
            "MODELLOOP_DATABASE_URL": db_url,
            "OMP_NUM_THREADS": "1",
            **settings,
        }
    )
    return env


@pytest.fixture
def home(loop_template: Path, tmp_path: Path) -> Path:
    return fresh_home(loop_template, tmp_path / "home")


# -- 1. the trainer ------------------------------------------------------------------------


class RegistryReader(threading.Thread):
    """Reads the registry the way the service does, over and over, while trainers work:
    every version it lists must be complete (metadata, graph matching its hash, reference)."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(daemon=True)
        self.registry = registry
        self.stop = threading.Event()
        self.reads = 0
        self.seen: set[int] = set()
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for v in self.registry.versions(MODEL):
                try:
                    meta = self.registry.metadata(MODEL, v)
                    data = self.registry.onnx_bytes(MODEL, v)  # checks the hash
                    self.registry.reference(MODEL, v)
                    if meta.version != v or sha256_bytes(data) != meta.onnx_sha256:
                        self.problems.append(f"version {v}: metadata does not match")
                except Exception as e:
                    self.problems.append(f"version {v}: {type(e).__name__}: {e}")
                self.seen.add(v)
            self.reads += 1
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.join(10)


def test_a_trainer_killed_mid_training_leaves_no_version_and_its_job_is_claimed_again(
    home: Path, db_url: str, db: Database
) -> None:
    registry = FolderRegistry(home / "registry")
    assert registry.versions(MODEL) == [1]
    env = worker_env(
        home,
        db_url,
        MODELLOOP_TRAINER_LEASE=str(LEASE),
        MODELLOOP_TRAINER_POLL=str(TRAINER_POLL),
        MODELLOOP_TRAINER_WAIT_SECONDS="0",  # train at once on what is there
    )
    queue = JobQueue(db)
    reader = RegistryReader(registry)
    reader.start()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(reader.finish)
        running = cleanup.enter_context(workers())
        # Two trainers polling for jobs: one claims the job and is killed mid-training; the
        # other keeps polling all through the lease, and must take the job only after it.
        running.extend(Worker("trainer", home, env, tag) for tag in ("a", "b"))

        def polling() -> bool:
            for w in running:
                w.assert_alive()
            return all("waiting for jobs" in w.log() for w in running)

        wait_for(polling, 60, "both trainers to poll for jobs", every=0.05)
        job, created = queue.enqueue(MODEL, "admin", "kill test")
        assert created

        def claimed_by() -> Job | None:
            j = queue.get(job.id)
            return j if j.status == "running" else None

        claimed: Job = wait_for(claimed_by, 60, "a trainer to claim the job", every=0.05)
        assert claimed.attempts == 1
        assert claimed.worker is not None
        assert claimed.worker in [w.worker_id() for w in running]
        first, second = sorted(running, key=lambda w: claimed.worker != w.worker_id())

        # Mid-training: the trainer has started fitting the challenger (~2.5 s), then dies.
        def training() -> bool:
            first.assert_alive()
            return "retrain default: champion v1" in first.log()

        wait_for(training, 60, "the trainer to start training", every=0.05)
        time.sleep(0.5)
        first.sigkill()
        killed_at = time.time()
        assert "retrain default: trained" not in first.log(), "training ended before the kill"

        # Dead mid-training: no version appeared, only hidden entries the registry ignores.
        orphan = queue.get(job.id)
        assert orphan.status == "running"
        assert orphan.worker == claimed.worker
        assert orphan.lease_until is not None
        lease_until = orphan.lease_until
        assert lease_until > killed_at
        assert registry.versions(MODEL) == [1]
        assert registry.active(MODEL) == 1
        model_dir = registry.model_dir(MODEL)
        visible = sorted(p.name for p in model_dir.iterdir() if not p.name.startswith("."))
        assert visible == ["1", "active", "history.jsonl"]
        hidden = [p.name for p in model_dir.iterdir() if p.name.startswith(".")]
        assert all(re.fullmatch(r"\.(lock|last_version|tmp-[0-9a-f]+)", n) for n in hidden)

        def reclaimed() -> Job | None:
            second.assert_alive()
            j = queue.get(job.id)
            if j.worker == claimed.worker:
                assert time.time() < lease_until + 10, "the expired lease was never claimed"
                return None
            return j

        again: Job = wait_for(reclaimed, 60, "the job to be claimed again", every=0.05)
        assert again.worker == second.worker_id()
        assert again.attempts == 2
        assert again.claimed_at is not None
        assert again.claimed_at >= lease_until  # not before the lease ran out
        reclaim_delay = again.claimed_at - lease_until
        assert reclaim_delay < TRAINER_POLL + 5.0  # and soon after (2-core CI: slack)

        def finished() -> Job | None:
            second.assert_alive()
            j = queue.get(job.id)
            return j if j.status in ("succeeded", "failed") else None

        done: Job = wait_for(finished, 60, "the second trainer to finish the job", every=0.1)
        assert done.status == "succeeded", (done.error, second.log()[-4000:])
        assert done.result is not None
        assert done.result["version"] == 2
        assert f"job {job.id}: retrain default (admin: kill test), attempt 2" in second.log()

    # Exactly one new version, complete: it loads, its hash matches, it predicts.
    assert registry.versions(MODEL) == [1, 2]
    meta = registry.metadata(MODEL, 2)
    assert meta.version == 2
    assert meta.parent_version == 1
    data = registry.onnx_bytes(MODEL, 2)
    assert sha256_bytes(data) == meta.onnx_sha256
    frame = synthetic.generate(50, 3)
    labels, _ = OnnxModel.load(data, meta.features, meta.task).predict(frame[meta.feature_names])
    assert len(labels) == 50
    assert registry.reference(MODEL, 2).rows > 0
    assert registry.active(MODEL) == (2 if done.result["promoted"] else 1)
    model_dir = registry.model_dir(MODEL)
    visible = sorted(p.name for p in model_dir.iterdir() if not p.name.startswith("."))
    assert visible == ["1", "2", "active", "history.jsonl"]
    assert [j.id for j in queue.list(MODEL)] == [job.id]

    # A reader polling all along never saw a partial version.
    assert reader.problems == []
    assert reader.seen == {1, 2}
    assert reader.reads > 100
    print(
        f"\nlease {LEASE:.0f} s; killed {lease_until - killed_at:.1f} s before the lease ran "
        f"out; claimed again by the other trainer {reclaim_delay:.2f} s after it; "
        f"{reader.reads} registry reads"
    )


# -- 2. the monitor ------------------------------------------------------------------------

FIRST_ROWS = 3_500  # three windows closed and 500 rows waiting before the kill
# then these, in records of RECORD_ROWS as the service writes them, all committed at once and
# read a record a chunk (CHUNK_ROWS is less than a record): a few hundred chunks a pass
MORE_ROWS = 60_000
RECORD_ROWS = 250
CHUNK_ROWS = 200
WINDOW_ROWS = 1_000


def log_traffic(
    registry: Registry, db: Database, rows: int, seed: int, start: int, labelled: bool
) -> None:
    """Rows as the service logs them (features and the model's real outputs), an hour old so
    that they are settled; labelled or not (labels: the monitor computes live metrics too)."""
    meta = registry.metadata(MODEL, 1)
    model = OnnxModel.load(registry.onnx_bytes(MODEL, 1), meta.features, meta.task)
    frame = synthetic.generate(rows, seed)
    x = frame[meta.feature_names].copy()
    for f in meta.features:
        if f.kind == "categorical":
            x[f.name] = x[f.name].fillna("")
    labels, proba = model.predict(x)
    assert proba is not None
    base = time.time() - 3600 + start * 0.01
    out: list[LogRow] = []
    for i, (rec, label, p) in enumerate(
        zip(frame[meta.feature_names].to_dict("records"), labels, proba, strict=True)
    ):
        out.append(
            {
                "id": f"kill-{start + i}",
                "ts": base + i * 0.01,
                "model": MODEL,
                "version": 1,
                "features": {
                    k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()
                },
                "output": {
                    "label": str(label),
                    "probabilities": {"no": float(p[0]), "yes": float(p[1])},
                },
                "latency_ms": 1.0,
            }
        )
    # one transaction of many records: a monitor already running sees them all at once
    writer = Writer(db.backend)
    with db.engine.begin() as conn:
        written = sum(
            writer.write(conn, out[i : i + RECORD_ROWS]) for i in range(0, rows, RECORD_ROWS)
        )
    assert written == rows
    log = PredictionLog(db)
    if not labelled:
        return
    truth = frame[synthetic.TARGET].tolist()
    matched, unknown = log.add_feedback((r["id"], t) for r, t in zip(out, truth, strict=True))
    assert (matched, unknown) == (rows, [])


def stored(db: Database) -> dict[str, Any]:
    """The monitor's stored state as one statement reads it (one snapshot): its watermark, the
    rows of its open window, the rows of its stored window reports, and the logged rows at or
    below the watermark. Counted once each, the last two sides are equal."""
    state = monitor_state.c
    wm = select(state.watermark).where(state.model == MODEL).scalar_subquery()
    q = select(
        wm,
        select(state.data).where(state.model == MODEL).scalar_subquery(),
        select(func.count())
        .select_from(drift_reports)
        .where(drift_reports.c.model == MODEL)
        .scalar_subquery(),
        select(func.coalesce(func.sum(drift_reports.c.rows), 0))
        .where(drift_reports.c.model == MODEL)
        .scalar_subquery(),
        select(func.coalesce(func.sum(batches.c.rows), 0))
        .where(batches.c.model == MODEL, batches.c.seq <= func.coalesce(wm, 0))
        .scalar_subquery(),
    )
    with db.engine.connect() as conn:
        watermark, data, reports, reported, logged = conn.execute(q).one()
    if isinstance(data, str):  # a JSON scalar subquery may come back as text
        data = json.loads(data)
    window = int((data or {}).get("window", {}).get("rows", 0))
    return {
        "watermark": int(watermark or 0),
        "reports": int(reports),
        "counted": int(reported) + window,
        "logged": int(logged),
        "window": window,
    }


def ingested(port: int) -> float:
    with contextlib.suppress(httpx.TransportError):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        for line in text.splitlines():
            if line.startswith("modelloop_monitor_rows_ingested_total{"):
                return float(line.rsplit(" ", 1)[1])
    return -1.0


class StateWatch(threading.Thread):
    """Reads the stored state every few milliseconds; records every snapshot in which the
    windows' rows do not add up to the logged rows under the watermark (a torn state: a kill at
    that moment would count rows twice, or lose them)."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.torn: list[dict[str, Any]] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            s = stored(self.db)
            if s["counted"] != s["logged"]:
                self.torn.append(s)
            self.reads += 1
            time.sleep(0.002)

    def finish(self) -> None:
        self.stop.set()
        self.join(10)


def test_a_monitor_killed_mid_ingestion_resumes_from_its_watermark_without_double_counting(
    home: Path, db_url: str, db: Database
) -> None:
    registry = FolderRegistry(home / "registry")
    port = free_port()
    env = worker_env(
        home,
        db_url,
        MODELLOOP_MONITOR_PORT=str(port),
        MODELLOOP_MONITOR_INTERVAL="0.5",
        MODELLOOP_CHUNK_ROWS=str(CHUNK_ROWS),
        MODELLOOP_WINDOW_ROWS=str(WINDOW_ROWS),
        MODELLOOP_WINDOW_SECONDS="86400",  # windows close on rows only
        MODELLOOP_REPORT_SECONDS="3600",
        MODELLOOP_RETENTION_DAYS="0",  # the rows are an hour old; retention is not under test
    )
    log_traffic(registry, db, FIRST_ROWS, seed=1, start=0, labelled=True)
    watch = StateWatch(db)
    watch.start()
    kills: list[dict[str, Any]] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(watch.finish)
        running = cleanup.enter_context(workers())
        first = Worker("monitor", home, env, "first")
        running.append(first)

        def caught_up() -> bool:
            first.assert_alive()
            return stored(db)["logged"] == FIRST_ROWS

        wait_for(caught_up, 60, "the first monitor to read the first rows", every=0.05)
        log_traffic(registry, db, MORE_ROWS, seed=2, start=FIRST_ROWS, labelled=False)
        total = FIRST_ROWS + MORE_ROWS

        with db.engine.connect() as conn:
            last_seq = conn.execute(
                select(func.max(batches.c.seq)).where(batches.c.model == MODEL)
            ).scalar_one()

        # Kill it twice mid-pass: each time once it has read a part of the rows it has not
        # stored yet, and before it has read them all.
        monitor, started_from = first, 0
        for n, fraction in enumerate((0.25, 0.5)):
            before = stored(db)
            # this process's counter: rows it read and stored already, then part of the rest
            target = before["logged"] - started_from + (total - before["logged"]) * fraction
            deadline = time.monotonic() + 60
            while (read := ingested(port)) < target:  # /metrics answers in ~50 ms
                monitor.assert_alive()
                assert time.monotonic() < deadline, "the monitor is not reading"
                time.sleep(0.005)
            monitor.sigkill()
            after = stored(db)
            kills.append({"read": read, "stored before": before, "stored after": after})
            assert after["logged"] < total, "the pass ended before the kill"
            assert after["counted"] == after["logged"], after
            started_from = after["logged"]
            monitor = Worker("monitor", home, env, f"restart-{n}")
            running.append(monitor)

        def finished(m: Worker = monitor) -> bool:
            m.assert_alive()
            return stored(db)["watermark"] >= last_seq

        resumed_from = started_from
        wait_for(finished, 60, "the restarted monitor to read every row", every=0.05)
        time.sleep(1.5)  # a few idle passes more: nothing is counted again
        final = stored(db)
        last_read = ingested(port)

    # Every logged row counted exactly once, the watermark on the last row.
    assert final["watermark"] == last_seq
    assert final["logged"] == total
    assert final["counted"] == total, (final, kills)
    assert final["reports"] == total // WINDOW_ROWS
    assert final["window"] == total % WINDOW_ROWS
    reports = list(reversed(DriftReports(db).list(MODEL, limit=1000)))
    assert [r["rows"] for r in reports] == [WINDOW_ROWS] * (total // WINDOW_ROWS)
    starts = [r["window_start"] for r in reports]
    assert starts == sorted(set(starts))  # no window judged twice
    # the folded counts themselves: every row in one score bin (or missing), once
    state = MonitorStates(db).get(MODEL)
    assert state is not None
    folded = sum(
        sum(r["report"]["window"]["score"][0]) + r["report"]["window"]["score"][1] for r in reports
    )
    score = state.data["window"]["score"]
    assert folded + sum(score[0]) + score[1] == total
    # the restarted process read exactly the rows after the watermark it found
    assert last_read == total - resumed_from
    # and no reader ever saw reports and state disagree
    assert watch.torn == [], watch.torn[:5]
    assert watch.reads > 100
    print(f"\nkills: {kills}\nresumed from {resumed_from} rows; {watch.reads} state reads")
