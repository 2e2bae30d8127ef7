"""The Open Inference Protocol v2 routes and /metrics, in process."""

import json
import math
import re
import struct
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from service_helpers import (
    FEATURES,
    MODEL,
    NUMERIC,
    TestClient,
    assert_error,
    label_values,
    metric_families,
    oip_inputs,
    predictions_in_db,
    row,
    sample_sum,
)

INFER = f"/v2/models/{MODEL}/infer"


def test_server_metadata_and_health(client: TestClient) -> None:
    r = client.get("/v2")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "modelloop"
    assert "binary_tensor_data" in r.json()["extensions"]
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
    assert client.get(f"/v2/models/{MODEL}/versions/2/ready").status_code == 200
    assert_error(client.get("/v2/models/nope/ready"), 404)
    assert_error(client.get(f"/v2/models/{MODEL}/versions/9/ready"), 404)


def test_model_metadata_lists_each_input_with_datatype_and_shape(client: TestClient) -> None:
    r = client.get(f"/v2/models/{MODEL}")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["name"] == MODEL
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnx"
    assert [i["name"] for i in meta["inputs"]] == FEATURES
    for i in meta["inputs"]:
        assert i["datatype"] == ("FP32" if i["name"] in NUMERIC else "BYTES"), i
        assert i["shape"] == [-1, 1], i
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert outputs["probabilities"]["shape"] == [-1, 2]
    v2 = client.get(f"/v2/models/{MODEL}/versions/2")
    assert v2.status_code == 200
    assert [i["name"] for i in v2.json()["inputs"]] == FEATURES
    assert_error(client.get(f"/v2/models/{MODEL}/versions/x"), 404)


def test_json_infer_matches_v1_predict(client: TestClient) -> None:
    rows = [row(i) for i in range(4)]
    r = client.post(INFER, json={"id": "req-1", "inputs": oip_inputs(rows)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["model_name"] == MODEL
    assert body["model_version"] == "1"
    assert body["id"] == "req-1"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["label"]["shape"] == [4]
    assert out["probabilities"]["shape"] == [4, 2]
    proba = out["probabilities"]["data"]
    v1 = client.post(f"/v1/models/{MODEL}/predict", json={"instances": rows}).json()
    for i, p in enumerate(v1["predictions"]):
        assert out["label"]["data"][i] == p["label"]
        assert proba[2 * i] == pytest.approx(p["probabilities"]["no"], abs=1e-6)
        assert proba[2 * i + 1] == pytest.approx(p["probabilities"]["yes"], abs=1e-6)


def test_generated_request_ids_are_random_and_rows_are_logged_under_them(
    new_client: Callable[..., TestClient], home: Path
) -> None:
    with new_client() as client:
        bodies = [
            client.post(INFER, json={"inputs": oip_inputs([row(i) for i in range(3)])}).json()
            for _ in range(2)
        ]
    rids = [b["id"] for b in bodies]
    for body in bodies:
        assert re.fullmatch(r"~[A-Za-z0-9_-]{16}\.[0-9a-z]+\.[A-Za-z0-9_-]{11}", body["id"]), body[
            "id"
        ]
        rid = body["id"]
        assert body["parameters"]["prediction_ids"] == f"{rid}:0,{rid}:1,{rid}:2"
    assert rids[0] != rids[1]
    logged = {p["id"] for p in predictions_in_db(home)}
    assert logged == {f"{rid}:{i}" for rid in rids for i in range(3)}


@pytest.mark.parametrize(
    ("rid", "rows", "status"),
    [
        ("x" * 126, 1, 200),  # logged as x…x:0, 128 characters
        ("x" * 127, 1, 422),
        ("x" * 126, 10, 200),  # the last row is x…x:9
        ("x" * 126, 11, 422),  # x…x:10 is 129
        ("", 1, 200),  # no id: a generated one
        ("~mine", 1, 422),
        ("a,b", 1, 422),
        ("a\tb", 1, 422),
    ],
)
def test_request_id_follows_the_id_rule_including_the_row_suffix(
    client: TestClient, rid: str, rows: int, status: int
) -> None:
    r = client.post(INFER, json={"id": rid, "inputs": oip_inputs([row(i) for i in range(rows)])})
    assert r.status_code == status, r.text
    if status == 422:
        assert_error(r, 422, '"id"')


def test_lone_surrogate_request_id_is_422(client: TestClient) -> None:
    """JSON holding NaN goes to the stdlib parser, which takes "\\ud800"."""
    raw = json.dumps({"id": "\ud800", "inputs": oip_inputs([dict(row(1), age=math.nan)])})
    r = client.post(INFER, content=raw.encode(), headers={"content-type": "application/json"})
    assert_error(r, 422, '"id"', "control")


def test_json_infer_with_nested_data_and_nulls_as_nan(client: TestClient) -> None:
    inputs = oip_inputs([row(1), row(2)])
    for t in inputs:
        t["data"] = [[v] for v in t["data"]]  # [[a], [b]] as shape [2, 1] says
    raw = orjson.dumps({"inputs": inputs})
    age = next(t for t in inputs if t["name"] == "age")
    raw = raw.replace(orjson.dumps(age["data"]), b"[[NaN],[25]]", 1)
    assert b"NaN" in raw
    r = client.post(INFER, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    proba = next(o for o in r.json()["outputs"] if o["name"] == "probabilities")["data"]
    assert sum(proba[:2]) == pytest.approx(1.0, abs=1e-5)


def test_binary_infer_by_hand(client: TestClient) -> None:
    rows = [row(7), row(8)]
    tensors, blobs = [], []
    for name in FEATURES:
        if name in NUMERIC:
            blob = struct.pack("<2f", *(float(r[name]) for r in rows))
            dtype = "FP32"
        else:
            blob = b"".join(struct.pack("<I", len(r[name])) + r[name].encode() for r in rows)
            dtype = "BYTES"
        tensors.append(
            {
                "name": name,
                "datatype": dtype,
                "shape": [2, 1],
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = orjson.dumps(
        {
            "inputs": tensors,
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    r = client.post(
        INFER,
        content=header + b"".join(blobs),
        headers={
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    head = orjson.loads(r.content[:n])
    assert [o["name"] for o in head["outputs"]] == ["probabilities"]
    size = head["outputs"][0]["parameters"]["binary_data_size"]
    assert size == 2 * 2 * 4 == len(r.content) - n
    values = struct.unpack("<4f", r.content[n:])
    v1 = client.post(f"/v1/models/{MODEL}/predict", json={"instances": rows}).json()
    expect = [p["probabilities"][k] for p in v1["predictions"] for k in ("no", "yes")]
    assert list(values) == pytest.approx(expect, abs=1e-6)


def test_infer_on_a_version(client: TestClient) -> None:
    r = client.post(f"/v2/models/{MODEL}/versions/2/infer", json={"inputs": oip_inputs([row(1)])})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "2"
    assert_error(
        client.post(f"/v2/models/{MODEL}/versions/9/infer", json={"inputs": oip_inputs([row(1)])}),
        404,
    )


def test_infer_with_a_missing_input_is_422_naming_it(client: TestClient) -> None:
    inputs = [t for t in oip_inputs([row(1)]) if t["name"] != "tenure_months"]
    assert_error(client.post(INFER, json={"inputs": inputs}), 422, "tenure_months")


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (lambda ts: [*ts, {**ts[0], "name": "colour"}], 422, ["colour"]),
        (
            lambda ts: [{**t, "datatype": "BYTES"} if t["name"] == "age" else t for t in ts],
            422,
            ["age"],
        ),
        (
            lambda ts: [
                {**t, "datatype": "FP32", "data": [1.0]} if t["name"] == "plan" else t for t in ts
            ],
            422,
            ["plan"],
        ),
        (
            lambda ts: [{**t, "shape": [2, 1]} if t["name"] == "age" else t for t in ts],
            422,
            ["age"],
        ),
        (
            lambda ts: [{**t, "data": [1e39]} if t["name"] == "income" else t for t in ts],
            422,
            ["income"],
        ),
        (lambda ts: [*ts, ts[0]], 422, ["age"]),
    ],
    ids=[
        "unknown input",
        "bytes for numeric",
        "number for categorical",
        "shape mismatch",
        "outside float32",
        "duplicate input",
    ],
)
def test_bad_infer_requests_are_4xx(
    client: TestClient,
    change: Callable[[list[dict]], list[dict]],
    status: int,
    words: list[str],
) -> None:
    r = client.post(INFER, json={"inputs": change(oip_inputs([row(1)]))})
    assert_error(r, status, *words)


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b"", {}),
        (b'{"inputs": [', {}),
        (b"{}", {"inference-header-content-length": "999"}),
    ],
    ids=["empty", "truncated", "header length past body"],
)
def test_malformed_infer_is_400(client: TestClient, raw: bytes, headers: dict[str, str]) -> None:
    assert_error(client.post(INFER, content=raw, headers=headers), 400)


def test_more_rows_than_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_instances=3)
    assert (
        client.post(INFER, json={"inputs": oip_inputs([row(i) for i in range(3)])}).status_code
        == 200
    )
    r = client.post(INFER, json={"inputs": oip_inputs([row(i) for i in range(4)])})
    assert_error(r, 413, "3")


def test_unknown_model_infer_is_404(client: TestClient) -> None:
    assert_error(client.post("/v2/models/nope/infer", json={"inputs": oip_inputs([row(0)])}), 404)
    assert_error(client.get("/v2/models/nope"), 404)


# -- /metrics --------------------------------------------------------------------------------

DOCUMENTED = {
    "modelloop_requests": "counter",
    "modelloop_predictions": "counter",
    "modelloop_request_duration_seconds": "histogram",
    "modelloop_inference_duration_seconds": "histogram",
    "modelloop_batch_rows": "histogram",
    "modelloop_model_active_version": "gauge",
    "modelloop_model_info": "gauge",
    "modelloop_model_swaps": "counter",
    "modelloop_model_load_failures": "counter",
    "modelloop_log_queue_rows": "gauge",
    "modelloop_log_rows_written": "counter",
}


def test_metrics_after_traffic(client: TestClient) -> None:
    ok = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(0), row(1)]})
    assert ok.status_code == 200
    bad = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [{}]})
    assert bad.status_code == 422
    assert client.post(INFER, json={"inputs": oip_inputs([row(2)])}).status_code == 200
    for i in range(5):  # made-up names must not become label values
        client.post(f"/v1/models/made-up-{i}/predict", json={"instances": [row(0)]})
        client.post(f"/v2/models/made-up-{i}/infer", json={"inputs": oip_inputs([row(0)])})
    fb = client.post(
        "/v1/feedback", json={"items": [{"id": ok.json()["predictions"][0]["id"], "label": "yes"}]}
    )
    assert fb.json()["matched"] == 1  # the log writer has committed the rows by now

    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    families = metric_families(text)
    for name, kind in DOCUMENTED.items():
        assert name in families, name
        assert families[name].type == kind, (name, families[name].type)
    assert (
        sample_sum(
            text,
            "modelloop_requests_total",
            model=MODEL,
            version="1",
            endpoint="predict",
            code="200",
        )
        == 1
    )
    assert (
        sample_sum(text, "modelloop_requests_total", model=MODEL, endpoint="predict", code="422")
        == 1
    )
    assert (
        sample_sum(
            text, "modelloop_requests_total", model=MODEL, version="1", endpoint="infer", code="200"
        )
        == 1
    )
    assert sample_sum(text, "modelloop_predictions_total", model=MODEL, version="1") == 3
    assert sample_sum(text, "modelloop_batch_rows_sum", model=MODEL) == 3
    assert (
        sample_sum(
            text, "modelloop_request_duration_seconds_count", model=MODEL, endpoint="predict"
        )
        == 2
    )
    assert sample_sum(text, "modelloop_inference_duration_seconds_count", model=MODEL) == 2
    assert sample_sum(text, "modelloop_model_active_version", model=MODEL) == 1
    assert sample_sum(text, "modelloop_model_info", model=MODEL, version="1", role="active") == 1
    assert sample_sum(text, "modelloop_log_rows_written_total") == 3
    assert sample_sum(text, "modelloop_log_queue_rows") == 0
    models = label_values(text, "model")
    assert not [m for m in models if m.startswith("made-up")], models
    assert sample_sum(text, "modelloop_requests_total", code="404") == 10
