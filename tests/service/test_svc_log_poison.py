"""Rows the database refuses, on a real `modelloop serve` over SQLite and PostgreSQL: only the
bad rows are set aside in the spool's quarantine, every other row of their batch or spool file
is written, and a poisoned spool file holds up none of the files behind it."""

import time
from pathlib import Path

import httpx
import orjson
import pytest
from service_helpers import MODEL, oip_inputs, row, running_server, sample_sum
from test_svc_log_outage import empty_pg, env, logged_ids, ready, wait_for


def write_spool_file(home: Path, name: str, rows: list[dict[str, object]]) -> None:
    (home / "spool").mkdir(exist_ok=True)
    (home / "spool" / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def spool_row(i: int, **changes: object) -> dict[str, object]:
    return {
        "id": f"spooled-{i}",
        "ts": time.time(),
        "model": MODEL,
        "version": 1,
        "features": row(i),
        "output": {"label": "no", "probabilities": {"no": 0.75, "yes": 0.25}},
        "latency_ms": 0.5,
        **changes,
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_poisoned_spool_file_is_salvaged_and_blocks_nothing(
    backend: str, home: Path, request: pytest.FixtureRequest
) -> None:
    extra = {}
    if backend == "postgresql":
        url = empty_pg(request)
        extra["MODELLOOP_DATABASE_URL"] = url
        # a 5,000-character id: the log keeps ids of up to 128
        bad = spool_row(3, id="x" * 5000)
        words = "cannot be stored"
    else:
        url = f"sqlite:///{home / 'modelloop.db'}"
        # a version past 64 bits (SQLite's driver could not send it either)
        bad = spool_row(3, version=2**63)
        words = "cannot be stored"
    first = [spool_row(0), spool_row(1), spool_row(2), bad, spool_row(4)]
    second = [spool_row(5), spool_row(6)]
    write_spool_file(home, "log-1000000000.000001-handmade-1.jsonl", first)
    write_spool_file(home, "log-1000000000.000002-handmade-2.jsonl", second)
    with running_server(home, {**env(), **extra}) as server:
        wait_for(lambda: not list((home / "spool").glob("*.jsonl")), 20, "the spool to empty")
        metrics = server.metrics()
        assert sample_sum(metrics, "modelloop_log_rows_quarantined_total") == 1
        assert sample_sum(metrics, "modelloop_log_rows_replayed_total") == 7
        assert ready(server).status_code == 200
        assert server.stop() == 0
    good = [r["id"] for r in first + second if r is not bad]
    assert sorted(logged_ids(url)) == sorted(good)
    kept = home / "spool" / "quarantine" / "log-1000000000.000001-handmade-1.rows.jsonl"
    assert [orjson.loads(line) for line in kept.read_bytes().splitlines()] == [bad]
    log = server.log()
    assert kept.name in log, log
    assert words in log, log


def test_a_row_postgresql_could_not_hold_is_refused_at_the_door(
    home: Path, request: pytest.FixtureRequest
) -> None:
    """An OIP request id past 128 characters (with its ':row') would not fit predictions.id on
    PostgreSQL: it is refused with 422 before it joins a batch, and the rows around it are
    written. (Rows the database refuses all the same are set aside: see the spool tests.)"""
    url = empty_pg(request)
    long_id = "r" * 200
    with running_server(home, {"MODELLOOP_DATABASE_URL": url}) as server:
        acknowledged: list[str] = []
        with httpx.Client(base_url=server.url, timeout=15) as client:
            for i in range(3):
                r = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(i)]})
                assert r.status_code == 200, r.text
                acknowledged += [p["id"] for p in r.json()["predictions"]]
            r = client.post(
                f"/v2/models/{MODEL}/infer", json={"id": long_id, "inputs": oip_inputs([row(3)])}
            )
            assert r.status_code == 422, r.text
            for i in range(4, 7):
                r = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(i)]})
                assert r.status_code == 200, r.text
                acknowledged += [p["id"] for p in r.json()["predictions"]]
        wait_for(lambda: len(logged_ids(url)) == 6, 15, "the other rows to be written")
        assert ready(server).status_code == 200
        assert sample_sum(server.metrics(), "modelloop_log_rows_quarantined_total") == 0
        assert server.stop() == 0
    assert sorted(logged_ids(url)) == sorted(acknowledged)
    assert not list((home / "spool").glob("*.jsonl")), "a batch went to the spool"
