"""The columnar log on SQLite and PostgreSQL: every column kind round-trips, replays are
logged once, caller ids once (the first wins), a generated id matches only with its tag, and
values no column can hold are refused."""

import math
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select

from log_helpers import logged, logged_ids
from modelloop.store.database import Database
from modelloop.store.errors import RowsRejected
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.log import ids as log_ids
from modelloop.store.schema import prediction_batches, prediction_ids


def row(pid: str, features: dict[str, Any], output: dict[str, Any], **changes: Any) -> LogRow:
    values: dict[str, Any] = {
        "id": pid,
        "ts": 1_700_000_000.0,
        "model": "m",
        "version": 1,
        "features": features,
        "output": output,
        "latency_ms": 0.5,
    }
    values.update(changes)
    return LogRow(**values)  # type: ignore[typeddict-item]


def generated(token: str, first: int, n: int, tag: str | None = None) -> list[str]:
    tag = log_ids.new_tag() if tag is None else tag
    return [f"{log_ids.request_id(token, first, tag)}:{i}" for i in range(n)]


def f32(x: float) -> float:
    return float(np.float32(x))


def labelled_by_id(log: PredictionLog, model: str = "m") -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in log.labelled(model)}


def records(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(prediction_batches)).scalar_one())


CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    # features of every kind (numbers with None, ints, strings with None, mixed types,
    # nested values), outputs of a binary classifier with string labels (float32 values)
    "kinds": (
        [
            {"x": 1.5, "n": 3, "s": "red", "mix": 1, "deep": {"a": [1, 2]}, "b": True},
            {"x": None, "n": None, "s": None, "mix": "one", "deep": None, "b": False},
            {"x": -0.0, "n": -(2**63), "s": "tab\t\x00é", "mix": 2.5, "deep": [], "b": None},
        ],
        [
            {"label": "yes", "probabilities": {"no": f32(0.1), "yes": f32(0.9)}},
            {"label": "no", "probabilities": {"no": f32(0.7), "yes": f32(0.3)}},
            {"label": "yes", "probabilities": {"no": 0.0, "yes": 1.0}},
        ],
    ),
    # integer labels, three classes, probabilities that are no float32 value
    "multiclass": (
        [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}],
        [
            {"label": 0, "probabilities": {"0": 0.1, "1": 0.2, "2": 0.7}},
            {"label": 2, "probabilities": {"0": 0.3, "1": 0.3, "2": 0.4}},
            {"label": 1, "probabilities": {"0": 1 / 3, "1": 1 / 3, "2": 1 / 3}},
        ],
    ),
    "regression": ([{"x": 1.0}, {"x": 2.0}], [{"value": f32(1.25)}, {"value": 1e-300}]),
    # outputs of no known shape, features whose names differ from row to row
    "odd": (
        [{"x": 1.0}, {"y": "b"}, {}],
        [{"label": "a"}, {"value": 1, "extra": [1]}, {"label": True, "probabilities": {}}],
    ),
    "mixed labels": (
        [{"x": 1.0}, {"x": 2.0}],
        [
            {"label": 1, "probabilities": {"a": 0.5, "b": 0.5}},
            {"label": "b", "probabilities": {"a": 0.5, "b": 0.5}},
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["generated", "caller"])
def test_every_column_kind_round_trips(db: Database, case: str, kind: str) -> None:
    features, outputs = CASES[case]
    n = len(features)
    pids = (
        generated(log_ids.new_token(), 7, n)
        if kind == "generated"
        else [f"c-{i}" for i in range(n)]
    )
    rows = [
        row(p, f, o, ts=1_700_000_000.0 + i, latency_ms=0.25 * i)
        for i, (p, f, o) in enumerate(zip(pids, features, outputs, strict=True))
    ]
    log = PredictionLog(db)
    assert log.write(rows) == n
    assert log.add_feedback([(p, i) for i, p in enumerate(pids)]) == (n, [])
    got = labelled_by_id(log)
    for i, r in enumerate(rows):
        back = got[r["id"]]
        assert back["features"] == r["features"]
        assert back["output"] == r["output"]
        # the types too: 1 is not 1.0, True is not 1
        assert orjson.dumps(back["features"]) == orjson.dumps(r["features"])
        assert orjson.dumps(back["output"]) == orjson.dumps(r["output"])
        assert (back["ts"], back["version"], back["label"]) == (r["ts"], 1, i)
    exported = logged(db, "m")
    assert [e["id"] for e in exported] == pids
    assert [orjson.loads(e["features"]) for e in exported] == features
    assert [e["latency_ms"] for e in exported] == [0.25 * i for i in range(n)]
    assert [e["label"] for e in exported] == [str(i) for i in range(n)]


def test_the_monitor_reads_records_as_arrays(db: Database) -> None:
    log = PredictionLog(db)
    token = log_ids.new_token()
    first = [
        row(
            p,
            {"x": float(i), "s": "ab"[i % 2], "n": i},
            {"label": "ab"[i % 2], "probabilities": {"a": f32(0.25), "b": f32(0.75)}},
            ts=100.0 + i,
        )
        for i, p in enumerate(generated(token, 0, 4))
    ]
    second = [row("c-1", {"x": None, "s": None, "n": 1}, {"value": 2.0}, ts=200.0, version=2)]
    third = [row("c-2", {"x": 1.0, "s": "a", "n": 2}, {"value": 3.0}, ts=300.0)]
    for rows in (first, second, third):
        log.write(rows)

    batches = log.batches_since("m", 0, 1, math.inf)
    assert len(batches) == 1  # whole records: at least one
    b = batches[0]
    assert (b.model, b.version, b.rows) == ("m", 1, 4)
    assert b.ts.tolist() == [100.0, 101.0, 102.0, 103.0]
    assert b.features["x"].dtype == np.float64
    assert b.features["n"].dtype == np.float64
    assert b.features["s"].tolist() == ["a", "b", "a", "b"]
    assert b.labels is not None
    assert b.labels.tolist() == ["a", "b", "a", "b"]
    assert b.probabilities["b"].tolist() == [0.75] * 4
    assert b.latency_ms.tolist() == [0.5] * 4

    rest = log.batches_since("m", b.seq, 100, math.inf)
    assert [(x.version, x.rows) for x in rest] == [(2, 1), (1, 1)]
    # a feature with no value in a record: NaN, whatever its kind elsewhere
    assert math.isnan(rest[0].features["x"][0])
    assert math.isnan(rest[0].features["s"][0])
    assert rest[0].values is not None
    assert rest[0].values.tolist() == [2.0]
    # the read stops at the first record as new as before_ts, even with older ones after it
    assert [x.rows for x in log.batches_since("m", b.seq, 100, 250.0)] == [1]
    assert log.batches_since("m", b.seq, 100, 150.0) == []
    assert log.batches_since("m", rest[-1].seq, 100, math.inf) == []
    assert log.batches_since("other", 0, 100, math.inf) == []

    latest = log.latest_features("m", 3)
    assert [ts for ts, _ in latest] == [300.0, 200.0, 103.0]
    assert latest[0][1] == {"x": 1.0, "s": "a", "n": 2}


def test_a_replayed_write_is_logged_once(db: Database) -> None:
    log = PredictionLog(db)
    token = log_ids.new_token()
    batch = [row(p, {"x": 1.0}, {"value": 1.0}) for p in generated(token, 0, 5)]
    batch += [row(f"c-{i}", {"x": 1.0}, {"value": 1.0}) for i in range(3)]
    assert log.write(batch) == 8
    assert log.write(batch) == 0
    assert records(db) == 2
    # the next request of the token is logged; a row repeated in a batch is logged once
    more = [row(p, {"x": 2.0}, {"value": 2.0}) for p in generated(token, 5, 2)]
    assert log.write(more + more[:1]) == 2
    assert log.count() == 10
    assert logged_ids(db, "m") == [r["id"] for r in batch[:5]] + [r["id"] for r in batch[5:]] + [
        r["id"] for r in more
    ]


def test_a_caller_id_is_logged_once_the_first_wins(db: Database) -> None:
    log = PredictionLog(db)
    assert log.write([row("a", {"x": 1.0}, {"value": 1.0}), row("b", {"x": 2.0}, {"value": 2.0})])
    # "a" again (with other values), "c" twice in one batch: the first of each stays
    again = [
        row("a", {"x": 9.0}, {"value": 9.0}),
        row("c", {"x": 3.0}, {"value": 3.0}),
        row("c", {"x": 4.0}, {"value": 4.0}),
        row("d", {"x": 5.0}, {"value": 5.0}),
    ]
    assert log.write(again) == 2
    assert log.write([row("a", {"x": 9.0}, {"value": 9.0})]) == 0  # nothing left: no record
    assert records(db) == 2
    assert logged_ids(db, "m") == ["a", "b", "c", "d"]
    log.add_feedback([(p, p) for p in "abcd"])
    got = labelled_by_id(log)
    assert {p: r["features"]["x"] for p, r in got.items()} == {
        "a": 1.0,
        "b": 2.0,
        "c": 3.0,
        "d": 5.0,
    }
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(prediction_ids)).scalar_one() == 4


def test_a_generated_id_matches_only_with_its_tag_and_row(db: Database) -> None:
    log = PredictionLog(db)
    token = log_ids.new_token()
    tag = log_ids.new_tag()
    pids = generated(token, 10, 3, tag)
    log.write([row(p, {"x": 1.0}, {"value": 1.0}) for p in pids])
    other_tag = log_ids.new_tag()
    wrong = [
        f"{log_ids.request_id(token, 10, other_tag)}:0",  # another tag
        f"{log_ids.request_id(token, 10, tag)}:3",  # a row the record lacks
        f"{log_ids.request_id(token, 9, tag)}:0",  # before the record
        f"{log_ids.request_id(log_ids.new_token(), 10, tag)}:0",  # another token
        f"{log_ids.request_id(token, 10, tag)}:01",  # not the canonical spelling
    ]
    assert log.origins(pids + wrong) == dict.fromkeys(pids, ("m", 1))
    matched, unknown = log.add_feedback([(p, 1.0) for p in pids[1:] + wrong])
    assert (matched, unknown) == (2, wrong)
    assert set(labelled_by_id(log)) == set(pids[1:])


def test_a_generated_id_naming_a_caller_record_is_unknown(db: Database) -> None:
    # the token of a record of caller ids, spelled as a generated id: that record keeps no
    # row keys, and the lookup answers unknown rather than failing on an empty key list
    log = PredictionLog(db)
    assert log.write([row("a", {"x": 1.0}, {"value": 1.0})]) == 1
    with db.engine.connect() as conn:
        token = conn.execute(select(prediction_batches.c.token)).scalar_one()
    forged = f"{log_ids.request_id(token, 0, log_ids.new_tag())}:0"
    assert log.add_feedback([(forged, 1.0), ("a", 2.0)]) == (1, [forged])
    assert set(labelled_by_id(log)) == {"a"}


def test_records_with_gaps_in_their_rows(db: Database) -> None:
    """Rows of a token need not be contiguous: requests of one token written out of order,
    a record of rows 0-1 and 6-7 around one of rows 2-5."""
    log = PredictionLog(db)
    token = log_ids.new_token()
    a, b, c = generated(token, 0, 2), generated(token, 2, 4), generated(token, 6, 2)
    assert log.write([row(p, {"x": 1.0}, {"value": 1.0}) for p in a + c]) == 4
    assert log.write([row(p, {"x": 2.0}, {"value": 2.0}) for p in b]) == 4
    assert log.origins(a + b + c) == dict.fromkeys(a + b + c, ("m", 1))
    assert log.add_feedback([(p, 0.5) for p in a + b + c]) == (8, [])
    got = labelled_by_id(log)
    assert {p: got[p]["features"]["x"] for p in a + b + c} == {
        **dict.fromkeys(a + c, 1.0),
        **dict.fromkeys(b, 2.0),
    }
    assert sorted(logged_ids(db, "m")) == sorted(a + b + c)


def test_several_models_and_versions_in_one_write(db: Database) -> None:
    log = PredictionLog(db)
    token = log_ids.new_token()
    pids = generated(token, 0, 3)
    rows = [
        row(pids[0], {"x": 1.0}, {"value": 1.0}),
        row(pids[1], {"x": 1.0}, {"value": 1.0}, version=2),
        row(pids[2], {"x": 1.0}, {"value": 1.0}, model="n"),
        row("c", {"x": 1.0}, {"value": 1.0}, model="n", version=3),
    ]
    assert log.write(rows) == 4
    assert (log.count(), log.count("m"), log.count("n")) == (4, 2, 2)
    assert log.origins([*pids, "c"]) == {
        pids[0]: ("m", 1),
        pids[1]: ("m", 2),
        pids[2]: ("n", 1),
        "c": ("n", 3),
    }


@pytest.mark.parametrize(
    "change",
    [
        {"id": "x" * 129},
        {"id": "a\x00b"},
        {"model": "m" * 64},
        {"version": 2**63},
        {"version": 2**31},
        {"features": {"x": 2**64}},
        {"output": {"label": 2**64, "probabilities": {}}},
        {"ts": "yesterday"},
    ],
    ids=[
        "long id",
        "NUL id",
        "long model",
        "version 2**63",
        "version 2**31",
        "int 2**64",
        "label 2**64",
        "text ts",
    ],
)
def test_values_no_column_holds_are_rejected(db: Database, change: dict[str, Any]) -> None:
    log = PredictionLog(db)
    good = [row(f"g-{i}", {"x": 1.0}, {"value": 1.0}) for i in range(3)]
    bad = row("bad", {"x": 1.0}, {"value": 1.0})
    bad.update(change)  # type: ignore[typeddict-item]
    with pytest.raises(RowsRejected):
        log.write([*good, bad])
    assert log.count() == 0  # the whole write, or nothing
    assert log.write(good) == 3
    with pytest.raises(RowsRejected):
        log.write([bad])
    assert log.count() == 3


def test_a_regrouped_replay_logs_only_its_new_rows(db: Database) -> None:
    """A spool file may hold two batches of one token, the first logged before its
    acknowledgement was lost: replayed as one write, its record starts where the logged one
    does, and only the second batch's rows are new. A replayed half (another first row) adds
    nothing either."""
    log = PredictionLog(db)
    token = log_ids.new_token()
    first = [row(p, {"x": 1.0}, {"value": 1.0}) for p in generated(token, 0, 4)]
    second = [row(p, {"x": 2.0}, {"value": 2.0}) for p in generated(token, 4, 4)]
    assert log.write(first) == 4
    assert log.write(first + second) == 4
    assert log.write(second[2:]) == 0
    assert log.write(first[1:] + second[:3]) == 0
    assert log.count() == 8
    assert logged_ids(db, "m") == [r["id"] for r in first + second]
    assert log.add_feedback([(r["id"], 1.0) for r in first + second]) == (8, [])
    assert len(log.labelled("m")) == 8
