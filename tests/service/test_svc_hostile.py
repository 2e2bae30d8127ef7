"""Hostile input: every case gets the right 4xx with a clear message, never a 500."""

import json
import math
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from service_helpers import (
    ADMIN_TOKEN,
    MODEL,
    TestClient,
    assert_error,
    oip_inputs,
    publish_corrupt,
    row,
    sample_sum,
)

from modelloop.store.registry import FolderRegistry


def post(client: TestClient, raw: bytes, path: str = f"/v1/models/{MODEL}/predict") -> Any:
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def test_deeply_nested_json_is_400(client: TestClient) -> None:
    raw = b'{"instances":[' + b"[" * 5000 + b"]" * 5000 + b"]}"
    assert_error(post(client, raw), 400, "not valid JSON")


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 400])
def test_numbers_beyond_double_are_400(client: TestClient, number: bytes) -> None:
    raw = json.dumps({"instances": [row(1)]}).encode().replace(b'"age": 32', b'"age": ' + number)
    assert b'age": ' + number in raw
    assert_error(post(client, raw), 400, "not valid JSON")


def test_numbers_beyond_float32_are_422(client: TestClient) -> None:
    body = {"instances": [dict(row(1), age=1e39)]}
    assert_error(client.post(f"/v1/models/{MODEL}/predict", json=body), 422, "float32", "age")


def test_unicode_categories_are_served_as_unknown_categories(client: TestClient) -> None:
    body = {"instances": [dict(row(1), region="南部 🙂"), dict(row(1), region="x" * 10_000)]}
    r = client.post(f"/v1/models/{MODEL}/predict", json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2


def test_ten_megabyte_body_is_413(client: TestClient) -> None:
    raw = b'{"instances":[' + b" " * (10 << 20) + b"]}"
    assert_error(post(client, raw), 413, "limit")


def test_huge_job_id_is_422_not_500(make_client: Any) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    r = client.get(
        "/v1/admin/jobs/99999999999999999999999", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert_error(r, 422, "job_id")


def test_huge_version_is_404_not_500(client: TestClient) -> None:
    assert_error(
        post(
            client,
            json.dumps({"instances": [row(1)]}).encode(),
            f"/v1/models/{MODEL}/versions/99999999999999999999/predict",
        ),
        404,
        "no version",
    )
    r = client.get(f"/v2/models/{MODEL}/versions/99999999999999999999")
    assert_error(r, 404, "no version")


@pytest.mark.parametrize("version", ["²", "٣", "1²"])
def test_version_in_other_digits_is_4xx_not_500(client: TestClient, version: str) -> None:
    """`str.isdigit` takes '²' (which `int` refuses) and '٣' (which `int` reads as 3)."""
    body = json.dumps({"instances": [row(1)]}).encode()
    r = post(client, body, f"/v1/models/{MODEL}/versions/{version}/predict")
    assert_error(r, 422, "version")  # v1 versions are integers
    infer = {"inputs": oip_inputs([row(1)])}
    r = client.post(f"/v2/models/{MODEL}/versions/{version}/infer", json=infer)
    assert_error(r, 404, "no version")
    assert_error(client.get(f"/v2/models/{MODEL}/versions/{version}"), 404, "no version")


@pytest.mark.parametrize("datatype", [{}, [], 32, None])
def test_infer_datatype_not_a_string_is_422_not_500(client: TestClient, datatype: Any) -> None:
    inputs = oip_inputs([row(1)])
    inputs[0]["datatype"] = datatype
    r = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": inputs})
    assert_error(r, 422, "datatype")


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", 7), ("parameters", []), ("outputs", [{"name": "label", "parameters": 1}])],
)
def test_infer_fields_of_the_wrong_type_are_422(client: TestClient, field: str, value: Any) -> None:
    """Fields the schema types are refused when mistyped, not silently ignored."""
    r = client.post(
        f"/v2/models/{MODEL}/infer", json={"inputs": oip_inputs([row(1)]), field: value}
    )
    assert_error(r, 422)


def test_deeply_nested_tensor_data_is_not_500(client: TestClient) -> None:
    """Nesting JSON accepts (orjson stops at 1024) but a recursive flatten would not."""
    inputs = oip_inputs([row(1)])
    inputs[0]["data"] = "NESTED"
    raw = json.dumps({"inputs": inputs}).encode()
    raw = raw.replace(b'"NESTED"', b"[" * 1000 + b"52" + b"]" * 1000)
    r = post(client, raw, f"/v2/models/{MODEL}/infer")
    assert r.status_code == 200, r.text


def test_categorical_value_over_the_documented_limit_is_422(client: TestClient) -> None:
    body = {"instances": [dict(row(1), region="x" * 10_001)]}
    r = client.post(f"/v1/models/{MODEL}/predict", json=body)
    assert_error(r, 422, "region", "10000")


def test_version_of_thousands_of_digits_is_404_not_500(make_client: Any) -> None:
    """`int` refuses more than 4,300 digits; every route that takes a version must not ask it."""
    client = make_client(admin_token=ADMIN_TOKEN)
    huge = "9" * 5000
    body = json.dumps({"instances": [row(1)]}).encode()
    message = assert_error(
        post(client, body, f"/v1/models/{MODEL}/versions/{huge}/predict"), 404, "no version"
    )
    assert len(message) < 200, message  # the segment is not echoed in full
    infer = {"inputs": oip_inputs([row(1)])}
    r = client.post(f"/v2/models/{MODEL}/versions/{huge}/infer", json=infer)
    assert_error(r, 404, "no version")
    assert_error(client.get(f"/v2/models/{MODEL}/versions/{huge}"), 404, "no version")
    assert_error(client.get(f"/v2/models/{MODEL}/versions/{huge}/ready"), 404, "no version")
    # Ten digits is already more than a version can have; nine is merely not there.
    assert_error(client.get(f"/v2/models/{MODEL}/versions/1000000000"), 404, "no version")
    assert_error(client.get(f"/v2/models/{MODEL}/versions/999999999"), 404, "no version")
    r = client.post(
        f"/v1/admin/models/{MODEL}/promote",
        json={"version": 10**9},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert_error(r, 422, "version")


def test_header_length_of_thousands_of_digits_is_400_not_500(client: TestClient) -> None:
    raw = json.dumps({"inputs": oip_inputs([row(1)])}).encode()
    r = client.post(
        f"/v2/models/{MODEL}/infer",
        content=raw,
        headers={"content-type": "application/json", "inference-header-content-length": "9" * 5000},
    )
    assert_error(r, 400, "inference-header-content-length")


def _binary_infer(client: TestClient, region: bytes) -> Any:
    """An infer request with binary tensors: `region` is the one BYTES element's raw bytes."""
    tensors, blobs = [], []
    for t in oip_inputs([row(1)]):
        if t["name"] == "region":
            blob = struct.pack("<I", len(region)) + region
        elif t["datatype"] == "BYTES":
            value = t["data"][0].encode()
            blob = struct.pack("<I", len(value)) + value
        else:
            blob = struct.pack("<f", float(t["data"][0]))
        tensors.append({**t, "parameters": {"binary_data_size": len(blob)}})
        del tensors[-1]["data"]
        blobs.append(blob)
    header = json.dumps({"inputs": tensors}).encode()
    return client.post(
        f"/v2/models/{MODEL}/infer",
        content=header + b"".join(blobs),
        headers={
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        },
    )


def test_infer_bytes_that_are_not_utf8_are_422_naming_the_input(client: TestClient) -> None:
    assert _binary_infer(client, "südé".encode()).status_code == 200
    for raw in (b"\xff\xfe", "\ud800".encode("utf-8", "surrogatepass"), b"ab\xc3"):
        assert_error(_binary_infer(client, raw), 422, "region", "UTF-8")


def test_infer_lone_surrogate_in_json_with_nan_is_422_naming_the_input(
    client: TestClient,
) -> None:
    """JSON holding NaN goes to the stdlib parser, which (unlike orjson) takes "\\ud800"."""
    inputs = oip_inputs([dict(row(1), age=math.nan, plan="\ud800")])
    raw = json.dumps({"inputs": inputs}).encode()
    assert b"NaN" in raw
    assert b'"\\ud800"' in raw
    assert_error(post(client, raw, f"/v2/models/{MODEL}/infer"), 422, "plan", "UTF-8")
    # Without NaN, orjson refuses the surrogate itself.
    raw = json.dumps({"inputs": oip_inputs([dict(row(1), plan="\ud800")])}).encode()
    assert_error(post(client, raw, f"/v2/models/{MODEL}/infer"), 400, "not valid JSON")


def test_infer_bytes_over_the_categorical_limit_are_422(client: TestClient) -> None:
    """The v1 API's limit of 10,000 characters per categorical value holds for OIP too."""
    infer = f"/v2/models/{MODEL}/infer"
    at_limit = oip_inputs([dict(row(1), region="é" * 10_000)])
    assert client.post(infer, json={"inputs": at_limit}).status_code == 200
    over = oip_inputs([dict(row(1), region="x" * 10_001)])
    assert_error(client.post(infer, json={"inputs": over}), 422, "region", "10000")
    assert _binary_infer(client, "é".encode() * 10_000).status_code == 200
    assert_error(_binary_infer(client, b"x" * 10_001), 422, "region", "10000")
    assert_error(_binary_infer(client, b"x" * 50_000), 422, "region", "10000")


def test_a_corrupt_version_is_not_reread_on_every_request(make_client: Any, home: Path) -> None:
    """Its model.onnx was read and hashed again for each request naming it; the failure is
    now remembered for a poll interval (then the files are read again)."""
    poll = 1.5
    client = make_client(poll_interval=poll)
    registry = FolderRegistry(home / "registry")
    version = publish_corrupt(registry)
    path = f"/v1/models/{MODEL}/versions/{version}/predict"
    body = {"instances": [row(1)]}

    def failures() -> float:
        return sample_sum(client.get("/metrics").text, "modelloop_model_load_failures_total")

    first = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # at once: they wait for one load
        replies = list(pool.map(lambda _: client.post(path, json=body), range(16)))
    for r in replies:
        assert_error(r, 503, "sha256")
    assert failures() == 1
    # Repaired meanwhile: still the remembered failure, until the poll interval is over.
    good = registry.onnx_bytes(MODEL, 1)
    (registry.version_dir(MODEL, version) / "model.onnx").write_bytes(good)
    for _ in range(10):
        assert_error(client.post(path, json=body), 503, "sha256")
    assert time.monotonic() - first < poll
    assert failures() == 1
    time.sleep(poll - (time.monotonic() - first) + 0.1)
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == version
    assert failures() == 1


@pytest.mark.parametrize("api", ["v1", "oip"])
def test_a_corrupt_version_is_read_and_hashed_once_per_poll_interval(
    make_client: Any, home: Path, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    """Counted at the registry: the service's own FolderRegistry, its `_read` wrapped."""
    poll = 1.5
    client = make_client(poll_interval=poll)
    registry = client.app.state.service.registry
    assert isinstance(registry, FolderRegistry)
    version = publish_corrupt(FolderRegistry(home / "registry"))
    reads: list[str] = []
    real_read = registry._read

    def counting_read(model: str, v: int, filename: str) -> bytes:
        if (model, v) == (MODEL, version):
            reads.append(filename)
        return real_read(model, v, filename)

    monkeypatch.setattr(registry, "_read", counting_read)
    if api == "v1":
        path, body = f"/v1/models/{MODEL}/versions/{version}/predict", {"instances": [row(1)]}
    else:
        path = f"/v2/models/{MODEL}/versions/{version}/infer"
        body = {"inputs": oip_inputs([row(1)])}

    def graph_reads() -> int:
        return reads.count("model.onnx")

    first = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: client.post(path, json=body), range(16)))
    replies += [client.post(path, json=body) for _ in range(20)]
    assert time.monotonic() - first < poll
    for r in replies:
        assert_error(r, 503, "sha256")
    assert graph_reads() == 1
    time.sleep(poll - (time.monotonic() - first) + 0.1)
    # After the interval: read (and hashed) once more, then remembered again.
    again = time.monotonic()
    for _ in range(20):
        assert_error(client.post(path, json=body), 503, "sha256")
    assert time.monotonic() - again < poll
    assert graph_reads() == 2
