"""Databases of schema 1 and 2, built with their own SQL, open as schema 3: every prediction,
its feedback and label come back through the columnar log, on SQLite and PostgreSQL."""

import math
from typing import Any

import orjson
import pytest
from sqlalchemy import inspect, select, text

from log_helpers import logged
from modelloop.store.database import Database, open_database
from modelloop.store.log import PredictionLog
from modelloop.store.reports import MonitorStates
from modelloop.store.schema import SCHEMA_VERSION, feedback, schema_info


def _old_schema(db: Database, version: int) -> None:
    """The tables of schema 1 or 2 that schema 3 changes, as those schemas created them."""
    seq = "BIGSERIAL PRIMARY KEY" if db.backend == "postgresql" else "INTEGER PRIMARY KEY"
    unique = (
        "UNIQUE INDEX ux_feedback_prediction_id"
        if version == 2
        else ("INDEX ix_feedback_prediction_id")
    )
    with db.engine.begin() as conn:
        for sql in (
            "CREATE TABLE modelloop_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
            f"CREATE TABLE predictions (seq {seq}, id VARCHAR(128) NOT NULL UNIQUE, "
            "ts FLOAT NOT NULL, model VARCHAR(63) NOT NULL, version INTEGER NOT NULL, "
            "features JSON NOT NULL, output JSON NOT NULL, latency_ms FLOAT NOT NULL)",
            "CREATE INDEX ix_predictions_model_seq ON predictions (model, seq)",
            f"CREATE TABLE feedback (seq {seq}, prediction_id VARCHAR(128) NOT NULL, "
            "label JSON NOT NULL, ts FLOAT NOT NULL)",
            f"CREATE {unique} ON feedback (prediction_id)",
            "CREATE TABLE monitor_state (model VARCHAR(63) PRIMARY KEY, watermark BIGINT "
            "NOT NULL, state VARCHAR(16) NOT NULL, updated_at FLOAT NOT NULL, data JSON NOT NULL)",
            f"INSERT INTO modelloop_schema (id, version) VALUES (1, {version})",
        ):
            conn.execute(text(sql))


def _json(db: Database, name: str) -> str:
    return f"CAST(:{name} AS JSON)" if db.backend == "postgresql" else f":{name}"


def _old_rows(n: int) -> list[dict[str, Any]]:
    """Rows of two models and two versions, interleaved, with schema-2 generated ids too."""
    rows = []
    for i in range(n):
        model = "m" if i % 5 else "other"
        rows.append(
            {
                "id": f"~{'a' * 20}{i:02d}:0" if i % 3 == 0 else f"caller-{i}",
                "ts": 1_700_000_000.0 + i,
                "model": model,
                "version": 1 + (i // 7) % 2,
                "features": {"x": i * 0.5, "colour": None if i % 4 else "red", "n": i},
                "output": {
                    "label": "yes" if i % 2 else "no",
                    "probabilities": {"no": 0.25, "yes": 0.75},
                },
                "latency_ms": 0.25 * i,
            }
        )
    return rows


def _fill(db: Database, rows: list[dict[str, Any]], labels: list[tuple[str, Any]]) -> None:
    with db.engine.begin() as conn:
        for r in rows:
            conn.execute(
                text(
                    "INSERT INTO predictions (id, ts, model, version, features, output, "
                    f"latency_ms) VALUES (:id, :ts, :model, :version, {_json(db, 'f')}, "
                    f"{_json(db, 'o')}, :latency_ms)"
                ),
                {
                    **r,
                    "f": orjson.dumps(r["features"]).decode(),
                    "o": orjson.dumps(r["output"]).decode(),
                },
            )
        for n, (pid, label) in enumerate(labels):
            conn.execute(
                text(
                    "INSERT INTO feedback (prediction_id, label, ts) "
                    f"VALUES (:p, {_json(db, 'l')}, :ts)"
                ),
                {"p": pid, "l": orjson.dumps(label).decode(), "ts": 2_000_000_000.0 + n},
            )
        # the monitor of "m" had read up to the row of seq 301, mid-record
        conn.execute(
            text(
                "INSERT INTO monitor_state (model, watermark, state, updated_at, data) "
                f"VALUES ('m', 301, 'ok', 0, {_json(db, 'd')})"
            ),
            {"d": "{}"},
        )


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_log_is_upgraded_whole(empty_db_url: str, version: int) -> None:
    old = Database(empty_db_url)
    rows = _old_rows(700)
    labels: list[tuple[str, Any]] = [(r["id"], i % 3) for i, r in enumerate(rows) if i % 4 == 1]
    if version == 1:  # schema 1 kept every label: the latest wins
        labels = [(pid, "stale") for pid, _ in labels] + labels
    labels.append(("orphan", "x"))
    try:
        _old_schema(old, version)
        _fill(old, rows, labels)
    finally:
        old.dispose()
    for opening in range(2):  # the second opening finds schema 3 and changes nothing
        db = open_database(empty_db_url)
        try:
            with db.engine.connect() as conn:
                assert conn.execute(select(schema_info.c.version)).scalar_one() == SCHEMA_VERSION
            assert "predictions" not in inspect(db.engine).get_table_names()
            log = PredictionLog(db)
            by_model = {m: [r for r in rows if r["model"] == m] for m in ("m", "other")}
            assert log.count() == 700
            assert log.count("m") == len(by_model["m"])
            for m, mine in by_model.items():  # each version's rows in log order
                got_rows = logged(db, m)
                for v in (1, 2):
                    assert [r["id"] for r in got_rows if r["version"] == v] == [
                        r["id"] for r in mine if r["version"] == v
                    ]
                assert len(got_rows) == len(mine)
            assert log.origins([r["id"] for r in rows] + ["nope"]) == {
                r["id"]: (r["model"], r["version"]) for r in rows
            }
            want = dict(labels[:-1])
            got = log.labelled("m") + log.labelled("other")
            assert len(got) == len(want)
            old_rows = {r["id"]: r for r in rows}
            for r in got:
                o = old_rows[r["id"]]
                assert r["label"] == want[r["id"]]
                assert (r["ts"], r["version"]) == (o["ts"], o["version"])
                assert (r["features"], r["output"]) == (o["features"], o["output"])
            with db.engine.connect() as conn:
                orphan = conn.execute(
                    select(feedback.c.label, feedback.c.model).where(
                        feedback.c.prediction_id == "orphan"
                    )
                ).one()
            assert tuple(orphan) == ("x", None)
            # the monitor's watermark now names records: it reads on from row seq 302
            state = MonitorStates(db).get("m")
            assert state is not None
            after = log.batches_since("m", state.watermark, 10_000, math.inf)
            times = sorted(t for b in after for t in b.ts.tolist())
            assert times == [r["ts"] for r in by_model["m"] if r["ts"] > 1_700_000_000.0 + 300]
            if opening == 0:
                assert log.add_feedback([(rows[1]["id"], "new")]) == (1, [])
                want[rows[1]["id"]] = "new"
                labels = [*labels[:-1], (rows[1]["id"], "new"), labels[-1]]
        finally:
            db.dispose()


def test_schema_1_with_duplicate_feedback_is_upgraded(empty_db_url: str) -> None:
    """A database of schema 1 holding several labels per prediction id: opened, it keeps the
    latest of each id's labels and gets the unique index."""
    old = Database(empty_db_url)
    try:
        _old_schema(old, 1)
        rows = _old_rows(3)
        for i, r in enumerate(rows):
            r["id"], r["model"] = f"p-{i}", "m"
        labels: list[tuple[str, Any]] = [("p-0", "no"), ("p-1", "yes"), ("p-0", "yes")]
        labels += [("p-0", 1), ("p-2", 2.5), ("p-1", "no"), ("orphan", "x"), ("orphan", "y")]
        _fill(old, rows, labels)
    finally:
        old.dispose()
    db = open_database(empty_db_url)
    try:
        with db.engine.connect() as conn:
            q = select(feedback.c.prediction_id, feedback.c.label).order_by(
                feedback.c.prediction_id
            )
            assert [tuple(r) for r in conn.execute(q)] == [
                ("orphan", "y"),
                ("p-0", 1),
                ("p-1", "no"),
                ("p-2", 2.5),
            ]
        indexes = inspect(db.engine).get_indexes("feedback")
        assert sorted((i["name"], bool(i["unique"])) for i in indexes) == [
            ("ix_feedback_model_token_row", False),
            ("ux_feedback_prediction_id", True),
        ]
        log = PredictionLog(db)
        assert log.add_feedback([("p-2", "corrected")]) == (1, [])
        assert {r["id"]: r["label"] for r in log.labelled("m")} == {
            "p-0": 1,
            "p-1": "no",
            "p-2": "corrected",
        }
    finally:
        db.dispose()
