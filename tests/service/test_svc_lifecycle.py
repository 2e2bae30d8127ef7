"""A real server under concurrent load, on SQLite and PostgreSQL: SIGTERM drains the log,
versions swap without a failed request, and a version that cannot load never serves."""

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from service_helpers import (
    ADMIN_TOKEN,
    BREAKERS,
    MODEL,
    Load,
    ServerProcess,
    copy_home,
    point_active,
    row,
    running_server,
    sample_sum,
)

import log_helpers
from modelloop.store.database import open_database
from modelloop.store.registry import FolderRegistry

DRAIN_REQUESTS = 2000


def logged_ids(db_url: str) -> list[str]:
    db = open_database(db_url)
    try:
        return log_helpers.logged_ids(db, MODEL)
    finally:
        db.dispose()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def serving(server: ServerProcess) -> int:
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}/predict", json={"instances": [row(0)]}, timeout=10
    )
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def test_sigterm_loses_no_acknowledged_prediction(
    template_home: Path, tmp_path: Path, db_url: str
) -> None:
    home = copy_home(template_home, tmp_path / "home")
    env = {
        "MODELLOOP_DATABASE_URL": db_url,
        # The writer would commit only after 60 s or 100k rows: at SIGTERM every row is still
        # queued, so each one in the database got there through the drain.
        "MODELLOOP_LOG_BATCH_ROWS": "100000",
        "MODELLOOP_LOG_FLUSH_SECONDS": "60",
    }

    def body(t: int, i: int) -> dict[str, object]:
        n = 1 + (i % 3)  # 1 to 3 rows per request, with our own ids
        return {
            "instances": [row(t * 1000 + i + k) for k in range(n)],
            "ids": [f"t{t}-r{i}-{k}" for k in range(n)],
        }

    server = ServerProcess(home, env).start()
    try:
        with Load(
            server.url, threads=8, stop_on_error=True, limit=DRAIN_REQUESTS, body=body
        ) as load:
            load.wait_ok(DRAIN_REQUESTS // 2, timeout=60)
            server.terminate()  # mid-load
            code = server.wait(60)
        result = load.result
    finally:
        server.stop()
    assert code == 0, server.log()
    assert result.ok >= DRAIN_REQUESTS // 2
    # Only refusals after the stop: every answer that came back was a 200.
    assert set(result.statuses) == {200}, (result.statuses, result.errors[:3])
    acknowledged = result.acknowledged_ids
    assert len(acknowledged) == len(set(acknowledged))
    in_db = logged_ids(db_url)
    assert len(in_db) == len(acknowledged)
    assert set(in_db) == set(acknowledged)
    assert "prediction log drained" in server.log()


def test_hot_swap_under_load_fails_no_request(
    template_home: Path, tmp_path: Path, db_url: str
) -> None:
    home = copy_home(template_home, tmp_path / "home")
    registry = FolderRegistry(home / "registry")
    env = {
        "MODELLOOP_DATABASE_URL": db_url,
        "MODELLOOP_POLL_INTERVAL": "0.2",
        "MODELLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with running_server(home, env) as server, Load(server.url, threads=4) as load:
        load.wait_ok(20)
        for i in range(10):
            target = 2 if i % 2 == 0 else 1
            if i % 4 < 2:
                r = httpx.post(
                    f"{server.url}/v1/admin/models/{MODEL}/promote",
                    json={"version": target, "reason": f"swap {i}"},
                    headers=auth,
                    timeout=30,
                )
                assert r.status_code == 200, r.text
                assert r.json()["serving_version"] == target
                assert serving(server) == target
            else:
                registry.promote(MODEL, target, "test", f"swap {i}")
                wait_for(lambda t=target: serving(server) == t, 10, f"version {target}")
            seen = load.result.ok
            load.wait_ok(seen + 30)
        result = load.stop()
        metrics = server.metrics()
    assert result.failures == 0, (result.statuses, result.errors[:3])
    assert not result.errors
    assert result.ok > 300
    assert result.versions == {1, 2}
    assert sample_sum(metrics, "modelloop_model_swaps_total", model=MODEL) >= 10
    assert sample_sum(metrics, "modelloop_model_load_failures_total") == 0
    assert len(logged_ids(db_url)) >= result.ok  # every answered row logged (+ probes)


def test_a_version_that_fails_to_load_never_serves(
    template_home: Path, tmp_path: Path, db_url: str
) -> None:
    home = copy_home(template_home, tmp_path / "home")
    registry = FolderRegistry(home / "registry")
    broken = [make(registry) for make in BREAKERS]
    env = {"MODELLOOP_DATABASE_URL": db_url, "MODELLOOP_POLL_INTERVAL": "0.2"}
    with running_server(home, env) as server, Load(server.url, threads=2) as load:
        load.wait_ok(10)

        def failures() -> float:
            return sample_sum(server.metrics(), "modelloop_model_load_failures_total", model=MODEL)

        for count, version in enumerate(broken, start=1):
            point_active(registry, version)
            wait_for(lambda c=count: failures() >= c, 10, f"version {version} to fail")
            time.sleep(0.6)  # three more polls: still the old version, no retry storm
            assert failures() == count
            assert serving(server) == 1
            seen = load.result.ok
            load.wait_ok(seen + 10)
        # A good version still swaps in after the failures.
        registry.promote(MODEL, 2, "test", "a good one")
        wait_for(lambda: serving(server) == 2, 10, "version 2")
        seen = load.result.ok
        load.wait_ok(seen + 10)
        result = load.stop()
        log = server.log()
    assert result.failures == 0, (result.statuses, result.errors[:3])
    assert result.versions == {1, 2}
    for version in broken:
        assert f"version {version} not loaded" in log, log
