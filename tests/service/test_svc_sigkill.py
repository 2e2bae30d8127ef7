"""Durable mode: a prediction is answered only once its log row is committed, so SIGKILL under
load loses no acknowledged row. (How many the default mode loses is measured by
bench/sigkill.py.)"""

import signal
import time
from pathlib import Path

import pytest
from service_helpers import Load, ServerProcess

import log_helpers
from modelloop.store.database import open_database


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_in_durable_mode_loses_nothing_acknowledged(
    backend: str, home: Path, request: pytest.FixtureRequest
) -> None:
    env = {"MODELLOOP_DURABLE": "true"}
    if backend == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        db = open_database(url)
        with db.engine.begin() as conn:
            log_helpers.empty_log(conn)
        db.dispose()
        env["MODELLOOP_DATABASE_URL"] = url
    else:
        url = f"sqlite:///{home / 'modelloop.db'}"
    server = ServerProcess(home, env).start()
    try:
        with Load(server.url, threads=8) as load:
            load.wait_ok(1500)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            time.sleep(0.5)
            result = load.stop()
    finally:
        server.stop()
    db = open_database(url)
    try:
        stored = set(log_helpers.logged_ids(db))
    finally:
        db.dispose()
    acknowledged = set(result.acknowledged_ids)
    assert len(acknowledged) >= 1500
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged rows lost"
