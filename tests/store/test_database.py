"""The database on SQLite and PostgreSQL: schema, prediction log, feedback, events."""

import time
import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from log_helpers import logged, logged_ids
from modelloop.store.database import Database, normalise_url, open_database
from modelloop.store.errors import SchemaTooNew
from modelloop.store.events import Events
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.schema import SCHEMA_VERSION, feedback, schema_info

TABLES = {
    "modelloop_schema",
    "prediction_batches",
    "prediction_ids",
    "feedback",
    "jobs",
    "drift_reports",
    "events",
}


def _row(i: int, model: str = "m", ts: float | None = None, version: int = 1) -> LogRow:
    return LogRow(
        id=f"p-{i}",
        ts=time.time() if ts is None else ts,
        model=model,
        version=version,
        features={"x": float(i), "colour": "red" if i % 2 else None},
        output={"label": "yes" if i % 3 else "no", "probabilities": [0.25, 0.75]},
        latency_ms=1.5,
    )


def test_schema_is_created_with_a_version(db: Database, db_url: str) -> None:
    assert db.backend == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert set(inspect(db.engine).get_table_names()) >= TABLES
    with db.engine.connect() as conn:
        assert conn.execute(select(schema_info.c.version)).scalars().all() == [SCHEMA_VERSION]


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    db = open_database(sqlite_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        db.dispose()


def test_migrating_twice_is_a_no_op(db: Database, db_url: str) -> None:
    log = PredictionLog(db)
    assert log.write([_row(1)]) == 1
    again = Database(db_url)
    try:
        assert again.migrate() == SCHEMA_VERSION
        assert again.migrate() == SCHEMA_VERSION
        with again.engine.connect() as conn:
            versions = conn.execute(select(schema_info.c.version)).scalars().all()
        assert versions == [SCHEMA_VERSION]
        assert PredictionLog(again).count() == 1  # data survives
    finally:
        again.dispose()


def test_a_newer_schema_is_refused(db: Database, db_url: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(schema_info).values(version=SCHEMA_VERSION + 1))
    newer = Database(db_url)
    try:
        with pytest.raises(SchemaTooNew, match="newer"):
            newer.migrate()
    finally:
        newer.dispose()
        with db.engine.begin() as conn:  # leave the shared PostgreSQL database usable
            conn.execute(update(schema_info).values(version=SCHEMA_VERSION))


def test_a_newer_schema_is_left_as_it_is(sqlite_url: str) -> None:
    """A newer modelloop may have dropped or reshaped a table: an older one must not recreate
    tables in its database before refusing it."""
    db = open_database(sqlite_url)
    with db.engine.begin() as conn:
        conn.execute(update(schema_info).values(version=SCHEMA_VERSION + 1))
        conn.execute(text("DROP TABLE events"))
    db.dispose()
    newer = Database(sqlite_url)
    try:
        with pytest.raises(SchemaTooNew):
            newer.migrate()
        assert "events" not in inspect(newer.engine).get_table_names()
    finally:
        newer.dispose()


def test_an_older_schema_is_upgraded(db: Database, db_url: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(schema_info).values(version=0))
    older = open_database(db_url)
    try:
        assert older.migrate() == SCHEMA_VERSION
    finally:
        older.dispose()
    with db.engine.connect() as conn:
        assert conn.execute(select(schema_info.c.version)).scalar_one() == SCHEMA_VERSION


def test_default_sqlite_file_and_its_folder_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "modelloop.db"
    db = open_database(f"sqlite:///{path}")
    db.dispose()
    assert path.is_file()


def test_url_normalisation() -> None:
    assert normalise_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_prediction_log_write_count_and_read_back(db: Database) -> None:
    log = PredictionLog(db)
    assert log.count() == 0
    assert log.write([]) == 0
    assert log.write([_row(i) for i in range(5)]) == 5
    assert log.write([_row(100 + i, model="other") for i in range(3)]) == 3
    assert log.write([_row(i) for i in range(5, 8)]) == 3
    assert log.count() == 11
    assert log.count("m") == 8
    assert log.count("other") == 3
    assert log.count("nobody") == 0

    got = logged(db, "m")
    assert [r["id"] for r in got] == [f"p-{i}" for i in range(8)]
    assert logged_ids(db, "other") == ["p-100", "p-101", "p-102"]
    # features and outputs come back as they went in
    row = got[1]
    assert orjson.loads(row["features"]) == {"x": 1.0, "colour": "red"}
    assert orjson.loads(got[0]["features"]) == {"x": 0.0, "colour": None}
    assert orjson.loads(row["output"]) == {"label": "yes", "probabilities": [0.25, 0.75]}
    assert (row["version"], row["latency_ms"], row["label"]) == (1, 1.5, None)


def test_replayed_batches_are_logged_once(db: Database) -> None:
    log = PredictionLog(db)
    batch = [_row(i) for i in range(10)]
    assert log.write(batch) == 10
    assert log.write(batch) == 0
    # A batch overlapping the logged rows writes only the new ones.
    assert log.write([_row(i) for i in range(5, 15)]) == 5
    assert log.count() == 15
    assert logged_ids(db, "m") == [f"p-{i}" for i in range(15)]


def test_log_writes_keep_order_and_survive_a_session_reset(db: Database) -> None:
    """Rows keep their batch order in the log, strings with awkward characters come back as
    sent, and a session whose temporary tables were discarded (as a pooler does) still
    writes."""
    log = PredictionLog(db)
    odd = _row(0)
    odd["features"] = {"x": 'tab\t "quote" back\\slash \u00e9 é \n', "y": None, "z": 1e300}
    batch = [odd] + [_row(i) for i in range(1, 600)]
    assert log.write(batch) == 600
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DISCARD TEMP")
            conn.commit()
    assert log.write([_row(i) for i in range(600, 610)]) == 10
    got = logged(db, "m")
    assert [r["id"] for r in got] == [f"p-{i}" for i in range(610)]
    assert orjson.loads(got[0]["features"]) == odd["features"]


def test_batches_of_any_size_are_written_whole_and_in_order(db: Database) -> None:
    """Every row lands once, in batch order, and the count of inserted rows adds up."""
    log = PredictionLog(db)
    sizes = [1, 3, 249, 250, 251, 499, 500, 777]
    start = 0
    for n in sizes:
        assert log.write([_row(i) for i in range(start, start + n)]) == n
        start += n
    assert log.write([_row(i) for i in range(start - 300, start + 5)]) == 5  # 300 replayed
    assert logged_ids(db, "m") == [f"p-{i}" for i in range(start + 5)]


def test_feedback_of_any_size_matches_exactly(db: Database) -> None:
    """Ids are looked up in IN lists padded to a few fixed lengths: padding matches nothing
    more, and every known id is matched once."""
    log = PredictionLog(db)
    log.write([_row(i) for i in range(800)])
    for n in (1, 3, 257, 777):
        items = [(f"p-{i}", "yes") for i in range(n)] + [(f"ghost-{n}", "no")]
        matched, unknown = log.add_feedback(items)
        assert (matched, unknown) == (n, [f"ghost-{n}"])


def test_feedback_matches_known_ids_and_reports_unknown(db: Database) -> None:
    log = PredictionLog(db)
    log.write([_row(i) for i in range(4)])
    matched, unknown = log.add_feedback([("p-0", "yes"), ("p-1", "no"), ("ghost", "yes")])
    assert matched == 2
    assert unknown == ["ghost"]
    matched, unknown = log.add_feedback([("nope-1", 1), ("nope-2", 2)])
    assert (matched, unknown) == (0, ["nope-1", "nope-2"])
    assert log.add_feedback([]) == (0, [])


def test_labelled_join_uses_the_newest_label(db: Database) -> None:
    log = PredictionLog(db)
    now = time.time()
    log.write([_row(i, ts=now - 100 + i) for i in range(5)])
    log.write([_row(50, model="other", ts=now)])
    log.add_feedback([("p-1", "no"), ("p-3", "yes"), ("p-50", "x")])
    log.add_feedback([("p-1", "yes")])  # a correction: the newest label wins

    rows = log.labelled("m")
    assert [r["id"] for r in rows] == ["p-3", "p-1"]  # newest prediction first
    assert {r["id"]: r["label"] for r in rows} == {"p-3": "yes", "p-1": "yes"}
    assert rows[0]["features"] == {"x": 3.0, "colour": "red"}
    assert rows[0]["label_ts"] >= rows[0]["ts"]
    assert [r["id"] for r in log.labelled("m", since_ts=now - 98)] == ["p-3"]
    assert [r["id"] for r in log.labelled("m", limit=1)] == ["p-3"]
    assert [r["id"] for r in log.labelled("other")] == ["p-50"]
    assert log.labelled("nobody") == []


def _feedback_rows(db: Database) -> list[tuple[str, object]]:
    with db.engine.connect() as conn:
        q = select(feedback.c.prediction_id, feedback.c.label).order_by(feedback.c.prediction_id)
        return [(pid, label) for pid, label in conn.execute(q)]


def test_feedback_keeps_one_label_per_prediction_the_latest(db: Database) -> None:
    """10,000 labels for one id in one request used to be 10,000 rows."""
    log = PredictionLog(db)
    log.write([_row(i) for i in range(3)])
    items = [("p-0", f"label-{i}") for i in range(10_000)] + [("p-1", "a"), ("p-1", "b")]
    assert log.add_feedback(items) == (10_002, [])
    assert _feedback_rows(db) == [("p-0", "label-9999"), ("p-1", "b")]
    assert log.add_feedback([("p-1", "c"), ("p-2", 7)]) == (2, [])  # a correction: upsert
    assert _feedback_rows(db) == [("p-0", "label-9999"), ("p-1", "c"), ("p-2", 7)]
    assert {r["id"]: r["label"] for r in log.labelled("m")} == {
        "p-0": "label-9999",
        "p-1": "c",
        "p-2": 7,
    }


def test_feedback_prediction_id_is_unique_in_the_database(db: Database) -> None:
    indexes = inspect(db.engine).get_indexes("feedback")
    assert sorted((i["name"], i["column_names"], bool(i["unique"])) for i in indexes) == [
        ("ix_feedback_model_token_row", ["model", "token", "row_n"], False),
        ("ux_feedback_prediction_id", ["prediction_id"], True),
    ]
    with db.engine.begin() as conn:
        conn.execute(feedback.insert().values(prediction_id="x", label="a", ts=1.0))
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(feedback.insert().values(prediction_id="x", label="b", ts=2.0))


def test_a_failing_label_check_stores_nothing(db: Database) -> None:
    log = PredictionLog(db)
    log.write([_row(i) for i in range(3)])
    seen: list[tuple[int, str, object, str, int]] = []

    def check(index: int, pid: str, label: object, model: str, version: int) -> object:
        seen.append((index, pid, label, model, version))
        if label == "bad":
            raise ValueError(f"item {index}")
        return label

    with pytest.raises(ValueError, match="item 2"):
        log.add_feedback([("p-0", "yes"), ("ghost", "bad"), ("p-1", "bad")], check)
    assert _feedback_rows(db) == []
    assert seen == [(0, "p-0", "yes", "m", 1), (2, "p-1", "bad", "m", 1)]
    assert log.add_feedback([("p-0", "yes")], lambda *a: "stored") == (1, [])
    assert _feedback_rows(db) == [("p-0", "stored")]


def test_feedback_labels_keep_their_type(db: Database) -> None:
    log = PredictionLog(db)
    log.write([_row(i) for i in range(3)])
    log.add_feedback([("p-0", 1), ("p-1", 2.5), ("p-2", "cat")])
    labels = {r["id"]: r["label"] for r in log.labelled("m")}
    assert labels == {"p-0": 1, "p-1": 2.5, "p-2": "cat"}


def test_events_record_and_list(db: Database) -> None:
    ev = Events(db)
    first = ev.record("m", "promote", "alice", {"from": None, "to": 1, "why": "first"})
    second = ev.record("m", "rollback", "bob", {"from": 1, "to": None})
    third = ev.record("n", "promote", "carol", {"nested": {"a": [1, 2]}})
    assert first < second < third

    everything = ev.list()
    assert [e["id"] for e in everything] == [third, second, first]  # newest first
    assert everything[-1]["details"] == {"from": None, "to": 1, "why": "first"}
    assert everything[-1]["actor"] == "alice"
    assert everything[0]["details"] == {"nested": {"a": [1, 2]}}
    assert everything[0]["ts"] >= everything[-1]["ts"]
    assert [e["id"] for e in ev.list(model="m")] == [second, first]
    assert [e["id"] for e in ev.list(kind="promote")] == [third, first]
    assert [e["id"] for e in ev.list(model="m", kind="promote")] == [first]
    assert [e["id"] for e in ev.list(limit=1)] == [third]
    assert ev.list(model=f"none-{uuid.uuid4().hex[:6]}") == []
