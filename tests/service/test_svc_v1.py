"""The v1 JSON API in process: predict, input checks, errors, feedback, model descriptions."""

import base64
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from service_helpers import (
    ADMIN_TOKEN,
    FEATURES,
    MODEL,
    NUMERIC,
    TestClient,
    assert_error,
    assert_prediction,
    oip_inputs,
    predictions_in_db,
    row,
)

from modelloop.store.database import open_database
from modelloop.store.log import PredictionLog
from modelloop.store.registry import FolderRegistry

PREDICT = f"/v1/models/{MODEL}/predict"


# -- predict ---------------------------------------------------------------------------------


def test_predict_one_row_has_label_probabilities_id_model_version(client: TestClient) -> None:
    r = client.post(PREDICT, json={"instances": [row(1)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"model", "version", "predictions"}
    assert body["model"] == MODEL
    assert body["version"] == 1
    assert len(body["predictions"]) == 1
    assert_prediction(body["predictions"][0])


def test_predict_many_rows_gives_one_prediction_per_row_in_order(client: TestClient) -> None:
    rows = [row(i) for i in range(40)]
    r = client.post(PREDICT, json={"instances": rows})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 40
    for p in preds:
        assert_prediction(p)
    assert len({p["id"] for p in preds}) == 40
    # Each row of the batch gets the prediction a request of that row alone gets.
    for i in (0, 17, 39):
        alone = client.post(PREDICT, json={"instances": [rows[i]]}).json()["predictions"][0]
        assert alone["label"] == preds[i]["label"]
        for k, v in alone["probabilities"].items():
            assert preds[i]["probabilities"][k] == pytest.approx(v, abs=1e-6)
    # The rows differ, and so do their probabilities: a shuffled answer would be caught.
    assert len({round(p["probabilities"]["yes"], 6) for p in preds}) > 30


def test_caller_ids_are_returned_and_logged(
    new_client: Callable[..., TestClient], home: Path
) -> None:
    ids = [f"order-{i}" for i in range(5)]
    rows = [row(i) for i in range(5)]
    with new_client() as client:
        r = client.post(PREDICT, json={"instances": rows, "ids": ids})
        assert r.status_code == 200, r.text
        assert [p["id"] for p in r.json()["predictions"]] == ids
        out = r.json()["predictions"]
    logged = {p["id"]: p for p in predictions_in_db(home)}
    assert set(logged) == set(ids)
    for i, pid in enumerate(ids):
        assert logged[pid]["features"] == rows[i]
        assert logged[pid]["version"] == 1
        assert logged[pid]["output"]["label"] == out[i]["label"]
        assert logged[pid]["latency_ms"] >= 0


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a"], ["one id per instance"]),
        (["a", "a"], ["unique"]),
        (["a", 5], ["ids[1]"]),
        (["a", ""], ["ids[1]"]),
        ("ab", ["one id per instance"]),
    ],
)
def test_bad_caller_ids_are_422(client: TestClient, ids: Any, words: list[str]) -> None:
    r = client.post(PREDICT, json={"instances": [row(0), row(1)], "ids": ids})
    assert_error(r, 422, *words)


GENERATED_ID = re.compile(r"~([A-Za-z0-9_-]{16})\.([0-9a-z]+)\.([A-Za-z0-9_-]{11}):([0-9]+)")


def test_generated_ids_name_their_rows_and_carry_a_random_tag_per_request(
    client: TestClient,
) -> None:
    """Ids name the process's token and the row numbered under it; each request draws its own
    8-byte tag, so nobody can name the ids of a request that has not happened yet, nor the
    rows beside their own."""
    seen = []
    for n in (3, 1, 2):
        preds = client.post(PREDICT, json={"instances": [row(i) for i in range(n)]}).json()
        matches = [GENERATED_ID.fullmatch(p["id"]) for p in preds["predictions"]]
        assert all(matches), preds
        assert [int(m[4]) for m in matches if m] == list(range(n))
        assert len({m.groups()[:3] for m in matches if m}) == 1  # one request id for the request
        m = matches[0]
        assert m is not None
        assert len(base64.urlsafe_b64decode(m[3] + "=")) == 8
        seen.append((m[1], int(m[2], 36), m[3]))
    assert len({token for token, _, _ in seen}) == 1  # one token for the process
    assert [first for _, first, _ in seen] == [seen[0][1], seen[0][1] + 3, seen[0][1] + 4]
    assert len({tag for _, _, tag in seen}) == 3


@pytest.mark.parametrize(
    ("pid", "words"),
    [
        ("~claimed:0", ["ids[1]", "'~'"]),
        ("~", ["ids[1]", "'~'"]),
        ("a,b", ["ids[1]", "comma"]),
        ("a\x00b", ["ids[1]", "control"]),
        ("line\nbreak", ["ids[1]", "control"]),
        ("zero\u200bwidth", ["ids[1]", "control"]),
        ("\x7f", ["ids[1]", "control"]),
        ("x" * 129, ["ids[1]", "128"]),
    ],
    ids=["generated prefix", "marker alone", "comma", "NUL", "newline", "format", "DEL", "long"],
)
def test_caller_ids_outside_the_id_rule_are_422(
    client: TestClient, pid: str, words: list[str]
) -> None:
    """Caller ids live in their own namespace: never one a generated id could take."""
    r = client.post(PREDICT, json={"instances": [row(0), row(1)], "ids": ["ok-1", pid]})
    assert_error(r, 422, *words)


def test_caller_ids_within_the_rule_are_taken(client: TestClient) -> None:
    ids = ["x" * 128, "order 17/ä-😀", "a~b", "-1:3"]
    r = client.post(PREDICT, json={"instances": [row(i) for i in range(4)], "ids": ids})
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["predictions"]] == ids


def test_nulls_go_to_the_imputer(client: TestClient) -> None:
    all_null = dict.fromkeys(FEATURES)
    some_null = {**row(3), "income": None, "plan": None}
    r = client.post(PREDICT, json={"instances": [all_null, some_null, row(3)]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    for p in preds:
        assert_prediction(p)
    # A null is a value the model handles, not an error and not zero.
    zero_income = {**row(3), "income": 0.0, "plan": None}
    z = client.post(PREDICT, json={"instances": [zero_income]}).json()["predictions"][0]
    assert z["probabilities"]["yes"] != pytest.approx(preds[1]["probabilities"]["yes"], abs=1e-9)


def test_integers_and_categorical_ints_are_accepted(client: TestClient) -> None:
    r = client.post(PREDICT, json={"instances": [{**row(2), "income": 50_000, "age": 40}]})
    assert r.status_code == 200, r.text
    assert_prediction(r.json()["predictions"][0])


def test_categorical_integer_is_read_as_its_decimal_string(client: TestClient) -> None:
    # 2.0 is an integer in JSON Schema (the OpenAPI schema documents integers for categorical
    # features), and orjson reads an integer past 64 bits as a float.
    values = [7, 7.0, "7", 2**70, "1180591620717411303424"]
    r = client.post(PREDICT, json={"instances": [{**row(1), "plan": v} for v in values]})
    assert r.status_code == 200, r.text
    p = [pred["probabilities"]["yes"] for pred in r.json()["predictions"]]
    assert p[0] == p[1] == p[2]
    assert p[3] == p[4]


def test_predict_on_a_given_version(client: TestClient) -> None:
    rows = [row(i) for i in range(10)]
    v1 = client.post(f"/v1/models/{MODEL}/versions/1/predict", json={"instances": rows})
    v2 = client.post(f"/v1/models/{MODEL}/versions/2/predict", json={"instances": rows})
    assert v1.status_code == 200, v1.text
    assert v2.status_code == 200, v2.text
    assert v1.json()["version"] == 1
    assert v2.json()["version"] == 2
    for p in v2.json()["predictions"]:
        assert_prediction(p)
    p1 = [p["probabilities"]["yes"] for p in v1.json()["predictions"]]
    p2 = [p["probabilities"]["yes"] for p in v2.json()["predictions"]]
    assert p1 != pytest.approx(p2, abs=1e-6), "version 2 is another model; it must answer"
    # The active endpoint still serves version 1.
    assert client.post(PREDICT, json={"instances": rows}).json()["version"] == 1
    assert_error(
        client.post(f"/v1/models/{MODEL}/versions/7/predict", json={"instances": rows}),
        404,
        "version 7",
    )
    assert_error(
        client.post(f"/v1/models/{MODEL}/versions/x/predict", json={"instances": rows}), 422
    )


# -- input checks ----------------------------------------------------------------------------


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


BAD_INSTANCES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("missing numeric", _without(row(1), "income"), ["instance 1", "'income'", "missing"]),
    ("missing categorical", _without(row(1), "plan"), ["instance 1", "'plan'", "missing"]),
    ("unknown feature", {**row(1), "colour": "red"}, ["instance 1", "'colour'", "unknown"]),
    (
        "unknown instead of known",
        {**_without(row(1), "age"), "agee": 3},
        ["instance 1", "'age'"],
    ),
    ("string for numeric", {**row(1), "age": "forty"}, ["instance 1", "'age'"]),
    ("numeric string for numeric", {**row(1), "income": "50000"}, ["instance 1", "'income'"]),
    ("bool for numeric", {**row(1), "support_tickets": True}, ["instance 1", "'support_tickets'"]),
    ("list for numeric", {**row(1), "age": [40]}, ["instance 1", "'age'"]),
    ("object for numeric", {**row(1), "age": {"v": 1}}, ["instance 1", "'age'"]),
    ("float for categorical", {**row(1), "plan": 1.5}, ["instance 1", "'plan'"]),
    ("bool for categorical", {**row(1), "region": False}, ["instance 1", "'region'"]),
    ("list for categorical", {**row(1), "device": ["ios"]}, ["instance 1", "'device'"]),
    ("above float32", {**row(1), "income": 1e39}, ["instance 1", "'income'", "float32"]),
    ("below float32", {**row(1), "income": -1e39}, ["instance 1", "'income'", "float32"]),
    ("huge integer", {**row(1), "age": 10**39}, ["instance 1", "'age'"]),
]


@pytest.mark.parametrize(
    ("instance", "words"),
    [pytest.param(inst, words, id=name) for name, inst, words in BAD_INSTANCES],
)
def test_bad_instance_is_422_naming_feature_and_index(
    client: TestClient, instance: dict[str, Any], words: list[str]
) -> None:
    r = client.post(PREDICT, json={"instances": [row(0), instance, row(2)]})
    assert_error(r, 422, *words)


def test_largest_float32_is_accepted(client: TestClient) -> None:
    r = client.post(PREDICT, json={"instances": [{**row(1), "income": 3.4e38}]})
    assert r.status_code == 200, r.text


def test_instance_that_is_not_an_object_is_422(client: TestClient) -> None:
    r = client.post(PREDICT, json={"instances": [row(0), row(1), 5]})
    assert_error(r, 422, "instance 2")


@pytest.mark.parametrize(
    "body",
    [
        [row(0)],
        {"instances": row(0)},
        {"instances": []},
        {"rows": [row(0)]},
        {"instances": [row(0)], "extra": 1},
    ],
    ids=["list body", "instances not a list", "empty instances", "no instances", "extra field"],
)
def test_bad_body_shape_is_422(client: TestClient, body: Any) -> None:
    assert_error(client.post(PREDICT, json=body), 422)


def test_more_instances_than_the_limit_is_413_with_the_limit(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_instances=7)
    assert client.post(PREDICT, json={"instances": [row(i) for i in range(7)]}).status_code == 200
    r = client.post(PREDICT, json={"instances": [row(i) for i in range(8)]})
    assert_error(r, 413, "7")


def test_body_over_the_size_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=1500)
    small = orjson.dumps({"instances": [row(0)]})
    assert len(small) < 1500
    assert client.post(PREDICT, content=small, headers=_json).status_code == 200
    big = orjson.dumps({"instances": [row(i) for i in range(20)]})
    assert len(big) > 1500
    assert_error(client.post(PREDICT, content=big, headers=_json), 413, "1500")
    # Without a Content-Length (chunked), the limit holds while the body streams in.
    assert_error(client.post(PREDICT, content=_chunks(big), headers=_json), 413, "1500")
    # Other endpoints that take a body are limited too.
    feedback = orjson.dumps({"items": [{"id": f"x{i}", "label": "yes"} for i in range(100)]})
    assert_error(client.post("/v1/feedback", content=feedback, headers=_json), 413)
    assert_error(client.post("/v1/feedback", content=_chunks(feedback), headers=_json), 413)
    assert_error(client.post(f"/v2/models/{MODEL}/infer", content=big, headers=_json), 413)


_json = {"content-type": "application/json"}


def _chunks(data: bytes, size: int = 500) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_content_type_is_415(client: TestClient, ctype: str) -> None:
    body = orjson.dumps({"instances": [row(0)]})
    r = client.post(PREDICT, content=body, headers={"content-type": ctype})
    assert_error(r, 415, "application/json")


def test_json_content_type_with_charset_is_accepted(client: TestClient) -> None:
    body = orjson.dumps({"instances": [row(0)]})
    r = client.post(
        PREDICT, content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"instances": [', ["not valid JSON"]),
        (b"", ["empty"]),
        (b'{"instances": [{"age": NaN}]}', ["NaN"]),
        (b'{"instances": [{"age": Infinity}]}', ["Infinity"]),
        (b"\xff\xfe", ["not valid JSON"]),
    ],
    ids=["truncated", "empty", "NaN", "Infinity", "not utf-8"],
)
def test_malformed_json_is_400(client: TestClient, raw: bytes, words: list[str]) -> None:
    assert_error(client.post(PREDICT, content=raw, headers=_json), 400, *words)


def test_nan_from_json_row_is_400_not_accepted(client: TestClient) -> None:
    raw = orjson.dumps({"instances": [row(0)]}).replace(b'"age":25', b'"age":NaN')
    assert b"NaN" in raw
    assert_error(client.post(PREDICT, content=raw, headers=_json), 400, "NaN")


# -- unknown models and hostile names -------------------------------------------------------


def test_unknown_model_is_404(client: TestClient) -> None:
    body = {"instances": [row(0)]}
    assert_error(client.post("/v1/models/nope/predict", json=body), 404, "nope")
    assert_error(client.post("/v1/models/nope/versions/1/predict", json=body), 404, "nope")
    assert_error(client.get("/v1/models/nope"), 404, "nope")


@pytest.mark.parametrize(
    "name",
    ["..%2Fx", "%2E%2E", "%2E%2E%2Fx", "...", "Default", "a.b", "%2Fetc%2Fpasswd", "x" * 70, "-x"],
)
def test_hostile_model_names_are_404_not_500(client: TestClient, name: str) -> None:
    body = {"instances": [row(0)]}
    for r in (
        client.post(f"/v1/models/{name}/predict", json=body),
        client.post(f"/v1/models/{name}/versions/1/predict", json=body),
        client.get(f"/v1/models/{name}"),
        client.get(f"/v2/models/{name}"),
        client.get(f"/v2/models/{name}/ready"),
        client.post(f"/v2/models/{name}/infer", json={"inputs": oip_inputs([row(0)])}),
    ):
        assert_error(r, 404)


def test_unknown_path_is_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.get(PREDICT), 405)


# -- feedback --------------------------------------------------------------------------------


def test_feedback_right_after_predict_matches(make_client: Callable[..., TestClient]) -> None:
    # The writer would not commit on its own for 60 s: feedback must wait for it.
    client = make_client(log_flush_seconds=60.0)
    r = client.post(PREDICT, json={"instances": [row(i) for i in range(3)]})
    ids = [p["id"] for p in r.json()["predictions"]]
    items = [{"id": pid, "label": "yes"} for pid in ids] + [{"id": "never-seen", "label": "no"}]
    fb = client.post("/v1/feedback", json={"items": items})
    assert fb.status_code == 200, fb.text
    assert fb.json() == {"received": 4, "matched": 3, "unknown_ids": ["never-seen"]}


def test_feedback_is_stored_against_the_prediction(
    new_client: Callable[..., TestClient], home: Path
) -> None:
    with new_client() as client:
        r = client.post(PREDICT, json={"instances": [row(5), row(6)], "ids": ["p-5", "p-6"]})
        assert r.status_code == 200
        fb = client.post(
            "/v1/feedback",
            json={"items": [{"id": "p-5", "label": "no"}, {"id": "p-9", "label": "yes"}]},
        )
        assert fb.json() == {"received": 2, "matched": 1, "unknown_ids": ["p-9"]}
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        labelled = PredictionLog(db).labelled(MODEL)
    finally:
        db.dispose()
    assert [(x["id"], x["label"]) for x in labelled] == [("p-5", "no")]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": [{"id": "a"}]},
        {"items": [{"id": 5, "label": "yes"}]},
        {"items": [{"id": "a", "label": "yes", "extra": 1}]},
        {"items": "a"},
    ],
)
def test_bad_feedback_is_422(client: TestClient, body: Any) -> None:
    assert_error(client.post("/v1/feedback", json=body), 422)


def test_malformed_feedback_json_is_4xx(client: TestClient) -> None:
    r = client.post("/v1/feedback", content=b'{"items": [', headers=_json)
    assert r.status_code in (400, 422)
    assert_error(r, r.status_code)


# -- model descriptions ----------------------------------------------------------------------


def test_list_models(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200, r.text
    models = r.json()["models"]
    assert [m["name"] for m in models] == [MODEL]
    m = models[0]
    assert m["active_version"] == 1
    assert m["serving_version"] == 1
    assert [v["version"] for v in m["versions"]] == [1, 2]
    assert m["task"] == "classification"
    assert "accuracy" in m["metrics"]


def test_get_model(client: TestClient) -> None:
    r = client.get(f"/v1/models/{MODEL}")
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["name"] == MODEL
    assert m["active_version"] == 1
    assert [f["name"] for f in m["features"]] == FEATURES
    kinds = {f["name"]: f["kind"] for f in m["features"]}
    assert all(kinds[n] == "numeric" for n in NUMERIC)
    assert kinds["plan"] == "categorical"
    assert sorted(m["classes"]) == ["no", "yes"]
    assert [v["version"] for v in m["versions"]] == [1, 2]
    assert m["history"]
    assert m["history"][-1]["to_version"] == 1
    assert math.isfinite(m["metrics"]["accuracy"])


SECRET_CSV = "/srv/secret-share/team-x/churn-2026.csv"


def _leaky_registry(home: Path) -> None:
    """v1 trained from a CSV file, promoted and rolled back by actors with addresses."""
    meta_file = home / "registry" / MODEL / "1" / "metadata.json"
    meta = orjson.loads(meta_file.read_bytes())
    meta["data"]["path"] = SECRET_CSV
    meta["data"]["source"] = f"{SECRET_CSV} + 300 labelled predictions"
    meta_file.write_bytes(orjson.dumps(meta))
    registry = FolderRegistry(home / "registry")
    registry.promote(MODEL, 2, "alice@build-host-7.corp", f"trial of {SECRET_CSV}")
    registry.rollback(MODEL, "admin@10.1.2.3", "worse, see C:\\Users\\bob\\notes.txt")


@pytest.mark.parametrize(
    ("configured", "headers"),
    [
        (None, {}),
        (None, {"authorization": f"Bearer {ADMIN_TOKEN}"}),
        (ADMIN_TOKEN, {}),
        (ADMIN_TOKEN, {"authorization": f"Bearer {ADMIN_TOKEN}x"}),
        (ADMIN_TOKEN, {"authorization": f"Basic {ADMIN_TOKEN}"}),
    ],
    ids=["admin off", "admin off, token given", "no token", "wrong token", "not bearer"],
)
def test_get_model_is_redacted_without_the_admin_token(
    home: Path,
    make_client: Callable[..., TestClient],
    configured: str | None,
    headers: dict[str, str],
) -> None:
    _leaky_registry(home)
    r = make_client(admin_token=configured).get(f"/v1/models/{MODEL}", headers=headers)
    assert r.status_code == 200, r.text
    assert "Authorization" in r.headers["vary"]
    for leak in ("/srv", "secret-share", "team-x", "build-host", "10.1.2.3", "Users", "bob"):
        assert leak not in r.text
    m = r.json()
    assert m["data"]["path"] == "churn-2026.csv"
    assert m["data"]["source"] == "churn-2026.csv + 300 labelled predictions"
    assert m["data"]["sha256"]
    history = m["history"][-2:]
    assert [h["actor"] for h in history] == ["alice", "admin"]
    assert [h["reason"] for h in history] == ["trial of churn-2026.csv", "worse, see notes.txt"]
    assert [(h["action"], h["to_version"]) for h in history] == [("promote", 2), ("rollback", 1)]


def test_get_model_is_whole_with_the_admin_token(
    home: Path, make_client: Callable[..., TestClient]
) -> None:
    _leaky_registry(home)
    client = make_client(admin_token=ADMIN_TOKEN)
    r = client.get(f"/v1/models/{MODEL}", headers={"authorization": f"bearer  {ADMIN_TOKEN} "})
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["data"]["path"] == SECRET_CSV
    assert m["data"]["source"] == f"{SECRET_CSV} + 300 labelled predictions"
    history = m["history"][-2:]
    assert [h["actor"] for h in history] == ["alice@build-host-7.corp", "admin@10.1.2.3"]
    assert history[0]["reason"] == f"trial of {SECRET_CSV}"


def test_the_report_page_shows_actors_and_reasons_redacted(home: Path) -> None:
    """The page is public like GET /v1/models/{m}: the same redaction."""
    from modelloop.monitoring.report_page import render
    from modelloop.store.events import Events

    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        events = Events(db)
        events.record(MODEL, "promote", "admin@10.1.2.3", {"reason": f"see {SECRET_CSV}"})
        events.record(MODEL, "publish", "alice@build-host-7.corp", {"text": "trained"})
        page = render(MODEL, FolderRegistry(home / "registry"), db)
    finally:
        db.dispose()
    for leak in ("10.1.2.3", "build-host", "/srv", "secret-share"):
        assert leak not in page
    assert "<td>admin</td><td>see churn-2026.csv</td>" in page
    assert "<td>alice</td><td>trained</td>" in page
