"""Retention in the serving process (MODELLOOP_SERVICE_RETENTION), on a real SQLite file and on
PostgreSQL: old log rows and their feedback go in the background, the deletions are counted
on /metrics, and a database that goes away costs failed passes (counted), never the service."""

import time
from collections.abc import Callable
from typing import Any

import pytest
from service_helpers import MODEL, TestClient, row, sample_sum
from sqlalchemy import select
from test_svc_outage import TcpProxy

import log_helpers
from modelloop.monitoring.settings import MonitorSettings
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import open_database
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.schema import feedback

DAY = 86_400.0
OLD, NEW = 30, 10


def seed(url: str) -> tuple[list[str], list[str]]:
    """OLD rows 40 days old (half labelled) and NEW rows of now."""
    now = time.time()
    rows: list[LogRow] = [
        {
            "id": f"r{i}",
            "ts": now - (40 * DAY if i < OLD else 0.0),
            "model": MODEL,
            "version": 1,
            "features": {"x": i},
            "output": {"label": "yes"},
            "latency_ms": 0.1,
        }
        for i in range(OLD + NEW)
    ]
    db = open_database(url)
    try:
        log = PredictionLog(db)
        log.write(rows[:OLD])  # a record of old rows, one of new: retention deletes records
        log.write(rows[OLD:])
        log.add_feedback([(r["id"], "yes") for r in rows[::2]])
    finally:
        db.dispose()
    ids = [r["id"] for r in rows]
    return ids[:OLD], ids[OLD:]


def stored(url: str) -> tuple[list[str], set[str]]:
    db = open_database(url)
    try:
        with db.engine.connect() as conn:
            labelled = set(conn.execute(select(feedback.c.prediction_id)).scalars())
        ids = log_helpers.logged_ids(db)
    finally:
        db.dispose()
    return ids, labelled


def deleted(client: TestClient, table: str) -> float:
    text = client.get("/metrics").text
    return sample_sum(text, "modelloop_retention_deleted_rows_total", table=table)


def errors(client: TestClient) -> float:
    return sample_sum(client.get("/metrics").text, "modelloop_retention_errors_total")


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds} s")
        time.sleep(0.05)
    return value


def predict_ok(client: TestClient) -> None:
    r = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(1)]})
    assert r.status_code == 200, r.text


def test_the_service_deletes_old_rows_in_the_background(
    db_url: str, make_client: Callable[..., TestClient]
) -> None:
    old, new = seed(db_url)
    client = make_client(database_url=db_url, retention_interval=0.2)
    wait_for(lambda: stored(db_url)[0][: len(new)] == new, 30, "retention pass")
    ids, labelled = stored(db_url)
    assert not set(old) & set(ids)
    assert set(new) <= set(ids)
    assert labelled == set(new[::2])  # OLD is even: r30, r32, ... are labelled
    assert deleted(client, "predictions") == OLD
    assert deleted(client, "feedback") == len(old[::2])
    assert errors(client) == 0
    predict_ok(client)


def test_service_retention_off_leaves_the_log_to_the_monitor(
    db_url: str, make_client: Callable[..., TestClient]
) -> None:
    old, new = seed(db_url)
    client = make_client(database_url=db_url, retention_interval=0.1, service_retention=False)
    predict_ok(client)
    time.sleep(1.0)  # ten intervals
    ids, _ = stored(db_url)
    assert ids[: OLD + NEW] == old + new
    assert deleted(client, "predictions") == 0


def test_a_database_away_costs_failed_passes_not_the_service(
    pg_url: str, make_client: Callable[..., TestClient]
) -> None:
    db = open_database(pg_url)
    with db.engine.begin() as conn:
        log_helpers.empty_log(conn)
    db.dispose()
    proxy = TcpProxy(5432).start()
    try:
        url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        client = make_client(database_url=url, retention_interval=0.2)
        predict_ok(client)
        proxy.cut()
        wait_for(lambda: errors(client) >= 3, 30, "failed retention passes")
        predict_ok(client)  # the row goes to the log queue or the spool
        assert client.get("/v2/health/live").status_code == 200
        old, new = seed(pg_url)  # written directly, past the proxy
        proxy.restore()
        wait_for(lambda: not set(old) & set(stored(pg_url)[0]), 30, "a retention pass")
        assert set(new) <= set(stored(pg_url)[0])
        assert deleted(client, "predictions") == OLD
    finally:
        proxy.close()


def test_the_service_and_the_monitor_read_the_same_retention_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELLOOP_RETENTION_DAYS", "7")
    monkeypatch.setenv("MODELLOOP_RETENTION_ROWS", "5000")
    monkeypatch.setenv("MODELLOOP_RETENTION_INTERVAL", "30")
    for settings in (ServiceSettings(), MonitorSettings()):
        assert (settings.retention_days, settings.retention_rows) == (7.0, 5000)
        assert settings.retention_interval == 30.0
    assert ServiceSettings().service_retention is True
    monkeypatch.setenv("MODELLOOP_SERVICE_RETENTION", "false")
    assert ServiceSettings().service_retention is False
