"""The log writer's salvage, replay and time bounds, on a real SQLite file and a real
PostgreSQL database: rows the database refuses are set aside one by one, every other row of
their batch or spool file is written, and no wait is unbounded."""

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from prometheus_client import CollectorRegistry

import log_helpers
from modelloop.service.errors import Unavailable
from modelloop.service.logwriter import LogWriter
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.salvage import DatabaseAway, Replayer, write_salvaging
from modelloop.service.spool import Spool
from modelloop.store.database import Database, open_database
from modelloop.store.log import LogRow, PredictionLog


def log_row(i: int, **changes: Any) -> LogRow:
    row: dict[str, Any] = {
        "id": f"row-{i}",
        "ts": 1_700_000_000.0 + i,
        "model": "default",
        "version": 1,
        "features": {"age": 30 + i, "region": "east"},
        "output": {"label": "no", "probabilities": {"no": 0.75, "yes": 0.25}},
        "latency_ms": 0.5,
    }
    row.update(changes)
    return cast(LogRow, row)


def bad_row(db: Database, i: int) -> LogRow:
    """A row the database itself refuses: an id over the column's 128 characters on
    PostgreSQL; on SQLite (which keeps strings of any length) a version past 64 bits, which
    its driver cannot send."""
    if db.backend == "postgresql":
        return log_row(i, id="x" * 5000)
    return log_row(i, version=2**63)


def logged_ids(db: Database) -> list[str]:
    return log_helpers.logged_ids(db)


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_bad_row_is_set_aside_and_every_other_row_of_its_batch_written(db: Database) -> None:
    sink = PredictionLog(db)
    rows = [log_row(i) for i in range(50)]
    for i in (0, 17, 49):
        rows[i] = bad_row(db, i)
    salvaged = write_salvaging(sink, rows)
    assert salvaged.inserted == 47
    assert salvaged.bad == [rows[0], rows[17], rows[49]]
    assert salvaged.error  # the database's own words, for the log
    assert logged_ids(db) == [r["id"] for i, r in enumerate(rows) if i not in (0, 17, 49)]
    # written again (a replay): nothing doubles, the same rows are refused
    again = write_salvaging(sink, rows)
    assert (again.inserted, len(again.bad)) == (0, 3)
    assert len(logged_ids(db)) == 47


def test_a_database_that_is_away_is_not_taken_for_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "modelloop.db"
    db = open_database(f"sqlite:///{path}")
    try:
        rows = [log_row(i) for i in range(10)]
        with sqlite_locked(path), pytest.raises(DatabaseAway) as away:
            write_salvaging(PredictionLog(db), rows)
        assert not away.value.answers
        assert "locked" in away.value.error
        assert logged_ids(db) == []  # nothing written, and nothing set aside: rows kept
        assert write_salvaging(PredictionLog(db), rows).inserted == 10
    finally:
        db.dispose()


def write_spool_file(directory: Path, name: str, lines: list[bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_replay_salvages_a_poisoned_file_and_goes_on_to_the_next(
    db: Database, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    good = [log_row(i) for i in range(6)]
    bad = bad_row(db, 99)
    corrupt = b'{"id": "half a row'
    wrong_shape = orjson.dumps({**log_row(98), "ts": "yesterday"})
    write_spool_file(
        spool.directory,
        "log-1.000000-test-1.jsonl",
        [orjson.dumps(good[0]), corrupt, orjson.dumps(bad), wrong_shape, orjson.dumps(good[1])],
    )
    write_spool_file(
        spool.directory, "log-2.000000-test-2.jsonl", [orjson.dumps(r) for r in good[2:]]
    )
    metrics = ServiceMetrics(CollectorRegistry())
    assert Replayer(spool, PredictionLog(db), metrics, 1.0).run(time.monotonic() + 30)
    assert sorted(logged_ids(db)) == sorted(r["id"] for r in good)
    assert spool.files() == []
    quarantine = spool.directory / "quarantine"
    rows_file = quarantine / "log-1.000000-test-1.rows.jsonl"
    assert [orjson.loads(line) for line in rows_file.read_bytes().splitlines()] == [bad]
    unreadable = quarantine / "log-1.000000-test-1.unreadable"
    assert unreadable.read_bytes().splitlines() == [corrupt, wrong_shape]
    assert metrics.registry.get_sample_value("modelloop_log_rows_quarantined_total") == 3
    assert metrics.registry.get_sample_value("modelloop_log_rows_replayed_total") == 7


def test_durable_wait_is_bounded_when_nothing_takes_rows(tmp_path: Path) -> None:
    """Database locked, spool folder a regular file: `written()` answers 503 within its
    bound, then a full queue answers 503 at once; once the lock goes, the rows are written."""
    path = tmp_path / "modelloop.db"
    db = open_database(f"sqlite:///{path}")
    (tmp_path / "spool").write_text("a file where the spool folder should be")
    metrics = ServiceMetrics(CollectorRegistry())
    writer = LogWriter(
        PredictionLog(db),
        metrics,
        Spool(tmp_path / "spool"),
        capacity_rows=5,
        flush_seconds=0.05,
        wait_seconds=1.0,
        drain_seconds=10.0,
    )

    async def scenario() -> None:
        writer.start()
        with sqlite_locked(path):
            await writer.put([log_row(0)], 200)
            started = time.monotonic()
            with pytest.raises(Unavailable) as timed_out:
                await writer.written()
            assert time.monotonic() - started < 2.0
            assert "Retry-After" in timed_out.value.headers
            for i in range(1, 5):
                await writer.put([log_row(i)], 200)  # room in memory: accepted
            deadline = time.monotonic() + 15
            while writer.healthy:
                assert time.monotonic() < deadline, "the writer never said it was stuck"
                await asyncio.sleep(0.05)
            assert metrics.registry.get_sample_value("modelloop_log_writer_healthy") == 0
            started = time.monotonic()
            with pytest.raises(Unavailable) as full:
                await writer.put([log_row(5)], 200)
            assert time.monotonic() - started < 0.1  # at once: waiting would not help
            assert int(full.value.headers["Retry-After"]) >= 1
            with pytest.raises(Unavailable):
                await writer.written()
        deadline = time.monotonic() + 15
        while writer.depth:
            assert time.monotonic() < deadline, "rows not written once the database was back"
            await asyncio.sleep(0.05)
        assert writer.healthy
        await writer.written()
        await writer.drain()

    try:
        asyncio.run(scenario())
        assert writer.healthy
        assert logged_ids(db) == [f"row-{i}" for i in range(5)]
        assert (writer.committed, writer.spooled, writer.lost) == (5, 0, 0)
    finally:
        db.dispose()
