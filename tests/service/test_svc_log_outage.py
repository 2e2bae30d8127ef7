"""A real `modelloop serve` whose prediction log can be written nowhere: the database is away
(SQLite under another connection's exclusive lock, PostgreSQL behind a cut TCP proxy) and the
spool cannot take files (a regular file where its folder should be, or a full disk). Requests
never hang, readiness tells the truth, nothing acknowledged is lost or doubled once the
database is back, and a stop that cannot keep rows says how many it lost. A database error
tells the caller nothing of the driver."""

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import MODEL, ServerProcess, assert_error, row, running_server, sample_sum
from test_svc_outage import TcpProxy, sqlite_outage

import log_helpers
from modelloop.store.database import open_database

WAIT_SECONDS = 2.0  # MODELLOOP_LOG_WAIT_SECONDS in these tests
CLIENT_TIMEOUT = 15.0  # a request that takes this long has hung


def env(**more: str) -> dict[str, str]:
    return {
        "MODELLOOP_LOG_FLUSH_SECONDS": "0.05",
        "MODELLOOP_LOG_QUEUE_ROWS": "50",
        "MODELLOOP_LOG_WAIT_SECONDS": str(WAIT_SECONDS),
        **more,
    }


@contextlib.contextmanager
def unwritable_spool(home: Path, how: str) -> Iterator[None]:
    """`$MODELLOOP_HOME/spool` takes no files: a regular file in its place, or a tiny tmpfs
    mounted there and filled up (ENOSPC)."""
    spool = home / "spool"
    if how == "file":
        spool.write_text("a regular file where the spool folder should be\n")
        yield
        return
    spool.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(spool)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with contextlib.suppress(OSError), open(spool / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def logged_ids(url: str) -> list[str]:
    db = open_database(url)
    try:
        return log_helpers.logged_ids(db)
    finally:
        db.dispose()


def empty_pg(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database, its prediction log emptied."""
    url: str = request.getfixturevalue("pg_url")
    db = open_database(url)
    with db.engine.begin() as conn:
        log_helpers.empty_log(conn)
    db.dispose()
    return url


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ready(server: ServerProcess) -> httpx.Response:
    return httpx.get(server.url + "/v2/health/ready", timeout=CLIENT_TIMEOUT)


def predict(client: httpx.Client, i: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(i)]})
    return r, time.monotonic() - started


@pytest.mark.parametrize("spool", ["file", "disk_full"])
def test_database_away_and_spool_unwritable_answers_never_hang(home: Path, spool: str) -> None:
    url = f"sqlite:///{home / 'modelloop.db'}"
    acknowledged: list[str] = []
    refused = slowest = 0.0
    with (
        unwritable_spool(home, spool),
        running_server(home, env()) as server,
        httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT) as client,
    ):
        for i in range(5):
            r, _ = predict(client, i)
            assert r.status_code == 200, r.text
            acknowledged += [p["id"] for p in r.json()["predictions"]]
        wait_for(lambda: len(logged_ids(url)) == 5, 10, "the first rows to be committed")
        with sqlite_outage(home):
            until = time.monotonic() + 12
            i = 100
            while time.monotonic() < until:
                r, took = predict(client, i)
                i += 1
                slowest = max(slowest, took)
                if r.status_code == 200:
                    acknowledged += [p["id"] for p in r.json()["predictions"]]
                else:
                    assert_error(r, 503, "prediction log")
                    assert int(r.headers["Retry-After"]) >= 1, r.headers
                    refused += 1
            not_ready = ready(server)
            metrics = server.metrics()
        assert not_ready.status_code == 503, not_ready.text
        assert not_ready.json()["ready"] is False
        assert "prediction log" in not_ready.json()["reason"]
        assert sample_sum(metrics, "modelloop_log_writer_healthy") == 0
        assert sample_sum(metrics, "modelloop_log_writer_errors_total", stage="database") > 0
        assert sample_sum(metrics, "modelloop_log_writer_errors_total", stage="spool") > 0
        wait_for(lambda: ready(server).status_code == 200, 15, "readiness once the lock is gone")
        wait_for(
            lambda: len(logged_ids(url)) >= len(acknowledged), 15, "the held rows to be written"
        )
        assert sample_sum(server.metrics(), "modelloop_log_writer_healthy") == 1
        assert server.stop() == 0
    # The queue holds 50 rows: the rest were refused, each within the wait bound (or at once
    # once the writer knew it was stuck), and none of them was logged.
    assert 50 <= len(acknowledged) <= 5 + 50 + 1, len(acknowledged)
    assert refused > 0
    assert slowest < WAIT_SECONDS + 1.5, slowest
    ids = logged_ids(url)
    assert len(ids) == len(set(ids))  # none doubled
    assert set(ids) == set(acknowledged)  # none lost, none unacknowledged
    assert "cannot make progress" in server.log()


@pytest.mark.parametrize("database_back", [False, True], ids=["stays_away", "back_in_time"])
def test_sigterm_with_nowhere_to_write_says_what_it_lost(home: Path, database_back: bool) -> None:
    url = f"sqlite:///{home / 'modelloop.db'}"
    drain = 8.0
    acknowledged: list[str] = []
    with (
        unwritable_spool(home, "file"),
        running_server(home, env(MODELLOOP_LOG_DRAIN_SECONDS=str(drain))) as server,
    ):
        with (
            sqlite_outage(home),
            httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT) as client,
        ):
            for i in range(20):
                r, _ = predict(client, i)
                assert r.status_code == 200, r.text
                acknowledged += [p["id"] for p in r.json()["predictions"]]
            wait_for(lambda: ready(server).status_code == 503, 15, "readiness to go false")
            started = time.monotonic()
            server.terminate()
            if database_back:
                time.sleep(1.0)  # the drain has begun; the lock goes within its window
            else:
                assert server.wait(drain + 10) == 0
        if database_back:
            assert server.wait(drain + 10) == 0
        took = time.monotonic() - started
    log = server.log()
    if database_back:
        assert sorted(logged_ids(url)) == sorted(acknowledged)
        assert "20 rows written to the database, 0 spooled, 0 quarantined, 0 lost" in log
        assert "LOST" not in log
    else:
        assert logged_ids(url) == []
        assert "20 rows LOST" in log, log
        assert "0 rows written to the database, 0 spooled, 0 quarantined, 20 lost" in log
        assert drain - 1 < took < drain + 5, took


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_error_tells_the_caller_nothing_of_the_driver(
    backend: str, home: Path, request: pytest.FixtureRequest
) -> None:
    proxy = None
    extra = {}
    if backend == "postgresql":
        url = empty_pg(request)
        proxy = TcpProxy(5432).start()
        extra["MODELLOOP_DATABASE_URL"] = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        outage: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        outage = sqlite_outage(home)
    try:
        with running_server(home, {**env(), **extra}) as server:
            # a logged prediction, so that its feedback has to be written (SQLite's lock
            # lets readers through)
            with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT) as client:
                r, _ = predict(client, 0)
                assert r.status_code == 200, r.text
                pid = r.json()["predictions"][0]["id"]
                r = client.post("/v1/feedback", json={"items": [{"id": pid, "label": "yes"}]})
                assert r.status_code == 200, r.text  # written() waited for the commit
                if proxy is not None:
                    proxy.cut()
                with outage:
                    r = client.post("/v1/feedback", json={"items": [{"id": pid, "label": "no"}]})
            assert_error(r, 503)
            assert r.json() == {"error": "database unavailable, try again"}
            assert int(r.headers["Retry-After"]) >= 1
            assert server.stop() == 0
        assert "database error on POST /v1/feedback" in server.log()
    finally:
        if proxy is not None:
            proxy.close()
