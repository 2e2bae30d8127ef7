"""Chunks (a request's predictions as columns) on SQLite and PostgreSQL: a record written from
chunks holds exactly what the same predictions written as rows hold, feedback finds them, a
chunk of an unusual shape goes as its rows, and replays are logged once."""

import dataclasses
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from log_helpers import logged_ids
from modelloop.store.database import Database
from modelloop.store.log import Chunk, PredictionLog, encoding
from modelloop.store.log import ids as log_ids
from modelloop.store.log.chunk import count, log_rows
from modelloop.store.log.writer import group
from modelloop.store.schema import prediction_batches

NAN = math.nan


def f32(x: float) -> float:
    return float(np.float32(x))


def chunk(
    token: str,
    first: int,
    features: dict[str, list[Any]],
    labels: list[Any],
    probabilities: list[list[float]] | None = None,
    classes: tuple[str, ...] = (),
    ts: float = 1_700_000_000.0,
) -> Chunk:
    tag = np.random.default_rng(first).bytes(8)
    rid = log_ids.request_id(token, first, log_ids.tag_of(tag))
    return Chunk(
        "m",
        1,
        token,
        first,
        tag,
        rid,
        ts,
        0.25 + first,
        list(features),
        list(features.values()),
        labels,
        probabilities,
        classes,
    )


CASES: dict[str, list[tuple[dict[str, list[Any]], list[Any], list[list[float]] | None]]] = {
    # numbers with NaN (null), ints, strings; a binary classifier with float32 probabilities
    "binary": [
        (
            {"x": [1.5, NAN, -0.0], "n": [3, 4, -(2**63)], "s": ["red", "tab\t\x00é", "red"]},
            ["yes", "no", "yes"],
            [[f32(0.1), f32(0.9)], [f32(0.7), f32(0.3)], [0.0, 1.0]],
        ),
        ({"x": [2.0], "n": [5], "s": ["blue"]}, ["no"], [[f32(0.6), f32(0.4)]]),
    ],
    # values as sent that no single column type holds (ints and floats, None and strings),
    # integer labels of three classes, probabilities that are no float32 value
    "mixed": [
        (
            {"x": [1, 2.5, NAN], "n": [None, 1, 2], "s": [None, "a", 3]},
            [0, 2, 1],
            [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [1 / 3, 1 / 3, 1 / 3]],
        ),
        ({"x": [NAN], "n": [None], "s": [None]}, [1], [[0.5, 0.25, 0.25]]),
    ],
    "regression": [
        ({"x": [1.0, 2.0]}, [f32(1.25), 1e-300], None),
        ({"x": [NAN]}, [3.0], None),
    ],
}


def classes_of(probabilities: list[list[float]] | None) -> tuple[str, ...]:
    if probabilities is None:
        return ()
    return ("no", "yes") if len(probabilities[0]) == 2 else ("0", "1", "2")


def chunks_of(case: str, token: str) -> list[Chunk]:
    out, first = [], 3
    for features, labels, probs in CASES[case]:
        out.append(chunk(token, first, features, labels, probs, classes_of(probs)))
        first += len(labels) + 2  # a gap: another replica's rows, or an unlogged request
    return out


def stored(db: Database) -> list[Any]:
    c = prediction_batches.c
    q = select(c.first_row, c.last_row, c.rows, c.ts_min, c.ts_max, c.row_tags, c.data)
    with db.engine.connect() as conn:
        return list(conn.execute(q.order_by(c.seq)))


@pytest.mark.parametrize("case", list(CASES))
def test_a_record_of_chunks_holds_what_their_rows_would(db: Database, case: str) -> None:
    token = log_ids.new_token()
    chunks = chunks_of(case, token)
    log = PredictionLog(db)
    assert log.write(chunks, fresh=True) == count(chunks)
    [(first, last, rows, ts_min, ts_max, keys, data)] = stored(db)

    # the row path's record of the same predictions
    [g] = group(log_rows(chunks))
    want = encoding.decode(encoding.encode(g.rows, g.numbers, g.firsts, g.tags))
    got = encoding.decode(data)
    assert got.schema.equals(want.schema, check_metadata=True), (got.schema, want.schema)
    assert got.equals(want)
    assert keys == encoding.keys(g.numbers, g.tags)
    assert (first, last, rows) == (min(g.numbers), max(g.numbers), len(g.rows))
    assert (ts_min, ts_max) == (1_700_000_000.0, 1_700_000_000.0)

    # every id is found, with its tag only; its features come back as sent (NaN as None)
    pids = [r["id"] for r in log_rows(chunks)]
    assert logged_ids(db, "m") == pids
    forged = pids[0].rsplit(".", 1)[0] + "." + log_ids.new_tag() + ":0"
    assert log.add_feedback([(p, "yes") for p in pids] + [(forged, "no")]) == (len(pids), [forged])
    back = {r["id"]: r for r in log.labelled("m")}
    for r in log_rows(chunks):
        assert back[r["id"]]["features"] == r["features"]
        assert back[r["id"]]["output"] == r["output"]


def test_log_rows_give_the_values_as_sent() -> None:
    c = chunk(
        log_ids.new_token(),
        0,
        {"x": [NAN, 1], "s": ["a", None]},
        ["b", "a"],
        [[0.25, 0.75], [0.5, 0.5]],
        ("a", "b"),
    )
    rows = c.log_rows()
    assert [r["features"] for r in rows] == [{"x": None, "s": "a"}, {"x": 1, "s": None}]
    assert rows[1]["output"] == {"label": "a", "probabilities": {"a": 0.5, "b": 0.5}}
    assert [r["id"] for r in rows] == [c.request_id + ":0", c.request_id + ":1"]
    assert rows[0]["latency_ms"] == 0.25


def test_a_chunk_of_another_shape_is_stored_as_its_rows(db: Database) -> None:
    token = log_ids.new_token()
    odd = [
        chunk(token, 0, {"x": [1.0, 2.0]}, [True, False], [[0.5, 0.5], [0.1, 0.9]], ("a", "b")),
        chunk(token, 2, {"x": [3.0, 4.0]}, ["a", 1], None),  # regression values that are no floats
    ]
    log = PredictionLog(db)
    assert log.write(odd, fresh=True) == 4
    rows = log_rows(odd)
    assert log.add_feedback([(r["id"], 1) for r in rows]) == (4, [])
    back = {r["id"]: r for r in log.labelled("m")}
    assert [back[r["id"]]["output"] for r in rows] == [r["output"] for r in rows]
    [(_, _, _, _, _, _, data)] = stored(db)
    assert encoding.is_json(encoding.decode(data).schema.field("output"))


def test_a_replayed_chunk_is_logged_once(db: Database) -> None:
    token = log_ids.new_token()
    a, b = chunks_of("binary", token)
    log = PredictionLog(db)
    assert log.write([a], fresh=True) == len(a)
    # sent before, its commit's answer lost: the rows already logged are skipped
    assert log.write([a, b], fresh=False) == len(b)
    assert log.write([a, b], fresh=False) == 0
    assert log.count() == len(a) + len(b)
    assert logged_ids(db, "m") == [r["id"] for r in log_rows([a, b])]


def test_chunks_and_rows_of_one_token_make_one_record(db: Database) -> None:
    token = log_ids.new_token()
    a, b = chunks_of("binary", token)
    [row] = b.log_rows()
    log = PredictionLog(db)
    assert log.write([a, row], fresh=True) == len(a) + 1
    assert len(stored(db)) == 1
    assert logged_ids(db, "m") == [r["id"] for r in log_rows([a, row])]


def test_a_chunk_of_another_model_version_goes_in_its_own_record(db: Database) -> None:
    token = log_ids.new_token()
    a, b = chunks_of("regression", token)
    other = dataclasses.replace(b, version=2)
    log = PredictionLog(db)
    assert log.write([a, other], fresh=True) == len(a) + len(other)
    batches = log.batches_since("m", 0, 100, math.inf)
    assert sorted((x.version, x.rows) for x in batches) == [(1, 2), (2, 1)]
    # 1e-300 is no float32 value, 3.0 is
    kinds = [encoding.decode(r[-1]).schema.field("value").type for r in stored(db)]
    assert kinds == [pa.float64(), pa.float32()]
