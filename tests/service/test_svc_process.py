"""A real `modelloop serve` process: a stock OIP client (tritonclient), promtool, batching."""

import json
import math
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from service_helpers import (
    CATEGORICAL,
    FEATURES,
    MODEL,
    NUMERIC,
    ServerProcess,
    assert_error,
    copy_home,
    metric_families,
    oip_inputs,
    row,
    running_server,
    sample_sum,
)


@pytest.fixture(scope="module")
def server(
    template_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = copy_home(template_home, tmp_path_factory.mktemp("process-home"))
    with running_server(home) as s:
        yield s


@pytest.fixture(scope="module")
def oip(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30.0)
    yield client
    client.close()


def triton_inputs(rows: list[dict[str, Any]], binary: bool = True) -> list[triton.InferInput]:
    inputs = []
    for name in FEATURES:
        if name in NUMERIC:
            data = np.array([[r[name]] for r in rows], dtype=np.float32)
            inp = triton.InferInput(name, list(data.shape), "FP32")
        else:
            data = np.array([[r[name]] for r in rows], dtype=object)
            inp = triton.InferInput(name, list(data.shape), "BYTES")
        inp.set_data_from_numpy(data, binary_data=binary)
        inputs.append(inp)
    return inputs


def v1_predict(
    server: ServerProcess, rows: list[dict[str, Any]], version: int | None = None
) -> Any:
    path = f"/v1/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/predict"
    r = httpx.post(server.url + path, json={"instances": rows}, timeout=30.0)
    assert r.status_code == 200, r.text
    return r.json()


def expected_proba(preds: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[p["probabilities"]["no"], p["probabilities"]["yes"]] for p in preds])


# -- tritonclient ----------------------------------------------------------------------------


def test_triton_health_and_metadata(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live()
    assert oip.is_server_ready()
    assert oip.is_model_ready(MODEL)
    assert oip.is_model_ready(MODEL, model_version="2")
    assert not oip.is_model_ready("nope")
    meta = oip.get_model_metadata(MODEL)
    assert meta["name"] == MODEL
    assert [i["name"] for i in meta["inputs"]] == FEATURES
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        **dict.fromkeys(NUMERIC, "FP32"),
        **dict.fromkeys(CATEGORICAL, "BYTES"),
    }
    assert all(i["shape"] == [-1, 1] for i in meta["inputs"])
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    server_meta = oip.get_server_metadata()
    assert "binary_tensor_data" in server_meta["extensions"]


def test_triton_infer_binary_inputs_default_outputs(
    oip: triton.InferenceServerClient, server: ServerProcess
) -> None:
    rows = [row(i) for i in range(5)]
    result = oip.infer(MODEL, triton_inputs(rows))
    labels = result.as_numpy("label")
    proba = result.as_numpy("probabilities")
    assert labels is not None
    assert proba is not None
    assert proba.shape == (5, 2)
    assert proba.dtype == np.float32
    expect = v1_predict(server, rows)["predictions"]
    assert [v.decode() if isinstance(v, bytes) else v for v in labels.ravel()] == [
        p["label"] for p in expect
    ]
    np.testing.assert_allclose(proba, expected_proba(expect), atol=1e-6)
    assert result.get_response()["model_version"] == "1"


def test_triton_infer_json_outputs(
    oip: triton.InferenceServerClient, server: ServerProcess
) -> None:
    rows = [row(i) for i in range(10, 13)]
    outputs = [
        triton.InferRequestedOutput("label", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = oip.infer(MODEL, triton_inputs(rows, binary=False), outputs=outputs)
    response = result.get_response()
    assert all("data" in o for o in response["outputs"]), response
    proba = result.as_numpy("probabilities")
    assert proba is not None
    expect = v1_predict(server, rows)["predictions"]
    np.testing.assert_allclose(proba.reshape(3, 2), expected_proba(expect), atol=1e-6)
    labels = result.as_numpy("label")
    assert labels is not None
    assert [str(v.decode() if isinstance(v, bytes) else v) for v in labels.ravel()] == [
        p["label"] for p in expect
    ]
    # One output, binary.
    only = oip.infer(
        MODEL,
        triton_inputs(rows),
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=True)],
    )
    assert [o["name"] for o in only.get_response()["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(only.as_numpy("probabilities"), proba.reshape(3, 2), atol=0)


def test_triton_infer_on_a_version(
    oip: triton.InferenceServerClient, server: ServerProcess
) -> None:
    rows = [row(i) for i in range(20, 24)]
    result = oip.infer(MODEL, triton_inputs(rows), model_version="2")
    assert result.get_response()["model_version"] == "2"
    expect = v1_predict(server, rows, version=2)["predictions"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected_proba(expect), atol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_nan_in_fp32_input_is_imputed(
    oip: triton.InferenceServerClient, server: ServerProcess, binary: bool
) -> None:
    rows: list[dict[str, Any]] = [row(30), row(31)]
    rows[0]["income"] = math.nan
    rows[1]["age"] = math.nan
    result = oip.infer(MODEL, triton_inputs(rows, binary=binary))
    proba = result.as_numpy("probabilities")
    assert proba is not None
    assert np.all(np.isfinite(proba))
    nulls = [{**r, "income": None} if i == 0 else {**r, "age": None} for i, r in enumerate(rows)]
    expect = v1_predict(server, nulls)["predictions"]
    np.testing.assert_allclose(proba, expected_proba(expect), atol=1e-6)


def test_triton_errors_are_raised_with_the_message(oip: triton.InferenceServerClient) -> None:
    inputs = [i for i in triton_inputs([row(1)]) if i.name() != "plan"]
    with pytest.raises(triton.InferenceServerException, match="plan"):
        oip.infer(MODEL, inputs)
    with pytest.raises(triton.InferenceServerException):
        oip.infer("nope", triton_inputs([row(1)]))


# -- promtool --------------------------------------------------------------------------------


def test_promtool_check_metrics_passes(server: ServerProcess, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/tools.sh installs it)")
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        assert (
            c.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(1)]}).status_code == 200
        )
        assert c.post(f"/v1/models/{MODEL}/predict", json={"instances": [{}]}).status_code == 422
        assert c.post("/v1/models/nope/predict", json={"instances": [row(1)]}).status_code == 404
        assert (
            c.post(
                f"/v1/models/{MODEL}/versions/2/predict", json={"instances": [row(1)]}
            ).status_code
            == 200
        )
        assert (
            c.post("/v1/feedback", json={"items": [{"id": "x", "label": "no"}]}).status_code == 200
        )
    text = server.metrics()
    families = metric_families(text)
    assert sample_sum(text, "modelloop_requests_total") >= 4
    assert "modelloop_batch_rows" in families
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, (done.stdout.decode(), done.stderr.decode())
    assert not done.stdout.strip(), done.stdout
    assert not done.stderr.strip(), done.stderr


# -- batching --------------------------------------------------------------------------------

THREADS = 16
PER_THREAD = 25


def _batch_totals(server: ServerProcess) -> tuple[float, float]:
    text = server.metrics()
    return (
        sample_sum(text, "modelloop_batch_rows_sum", model=MODEL),
        sample_sum(text, "modelloop_batch_rows_count", model=MODEL),
    )


def _concurrent(server: ServerProcess, rows: list[dict[str, Any]]) -> dict[int, Any]:
    """Send each row in its own request from THREADS threads at once; answers by row index."""
    answers: dict[int, Any] = {}
    errors: list[str] = []
    start = threading.Barrier(THREADS)
    lock = threading.Lock()

    def worker(t: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as c:
            start.wait()
            for k in range(t, len(rows), THREADS):
                r = c.post(f"/v1/models/{MODEL}/predict", json={"instances": [rows[k]]})
                with lock:
                    if r.status_code == 200:
                        answers[k] = r.json()["predictions"][0]
                    else:
                        errors.append(r.text)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:3]
    assert len(answers) == len(rows)
    return answers


def test_concurrent_requests_are_batched_and_each_gets_its_own_row(server: ServerProcess) -> None:
    rows = [row(1000 + i) for i in range(THREADS * PER_THREAD)]
    # Serial answers first: one row per ONNX call.
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        serial = [
            c.post(f"/v1/models/{MODEL}/predict", json={"instances": [r]}).json()["predictions"][0]
            for r in rows
        ]
    yes = np.array([p["probabilities"]["yes"] for p in serial])
    assert yes.min() < 0.5 < yes.max(), "both labels must occur"

    sum0, count0 = _batch_totals(server)
    answers = _concurrent(server, rows)
    sum1, count1 = _batch_totals(server)
    assert sum1 - sum0 == len(rows)
    assert count1 - count0 < len(rows), "no two requests were merged into one ONNX call"
    assert (sum1 - sum0) / (count1 - count0) > 1

    ambiguous = 0
    for k, p in answers.items():
        assert p["label"] == serial[k]["label"], k
        assert p["probabilities"]["yes"] == pytest.approx(yes[k], abs=1e-6), k
        # Another row's answer would have been caught: few rows share a probability.
        ambiguous += int(np.count_nonzero(np.abs(yes - p["probabilities"]["yes"]) <= 1e-6) > 1)
    assert ambiguous < len(rows) * 0.05


def test_without_batching_every_onnx_call_has_one_row(template_home: Path, tmp_path: Path) -> None:
    home = copy_home(template_home, tmp_path / "home")
    with running_server(home, {"MODELLOOP_BATCHING": "false"}) as server:
        rows = [row(2000 + i) for i in range(THREADS * 10)]
        answers = _concurrent(server, rows)
        text = server.metrics()
    count = sample_sum(text, "modelloop_batch_rows_count", model=MODEL)
    assert count == len(rows) == len(answers)
    assert sample_sum(text, "modelloop_batch_rows_sum", model=MODEL) == len(rows)
    assert sample_sum(text, "modelloop_batch_rows_bucket", model=MODEL, le="1.0") == len(rows)


def test_a_poisoned_request_among_concurrent_ones_fails_alone(server: ServerProcess) -> None:
    """JSON holding NaN is parsed by the stdlib, which lets a lone surrogate through; that
    string once failed the whole merged ONNX call (a 500 for every request merged with it)."""
    rows = [row(3000 + i) for i in range(THREADS * 4)]
    poison_row = dict(row(1), age=math.nan, region="\ud800")
    poison = json.dumps({"inputs": oip_inputs([poison_row])}).encode()
    assert b"NaN" in poison
    assert b"\\ud800" in poison
    infer = f"/v2/models/{MODEL}/infer"
    serial = expected_proba(v1_predict(server, rows)["predictions"])
    answers: dict[int, Any] = {}
    refused: list[httpx.Response] = []
    errors: list[str] = []
    start = threading.Barrier(THREADS + 2)
    lock = threading.Lock()

    def good(t: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as c:
            start.wait()
            for k in range(t, len(rows), THREADS):
                r = c.post(infer, json={"inputs": oip_inputs([rows[k]])})
                with lock:
                    if r.status_code == 200:
                        answers[k] = r.json()
                    else:
                        errors.append(f"{r.status_code} {r.text}")

    def bad() -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as c:
            start.wait()
            for _ in range(len(rows) // THREADS):
                r = c.post(infer, content=poison, headers={"content-type": "application/json"})
                with lock:
                    refused.append(r)

    threads = [threading.Thread(target=good, args=(t,)) for t in range(THREADS)]
    threads += [threading.Thread(target=bad) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:3]
    assert len(answers) == len(rows)
    for k, body in answers.items():
        proba = next(o for o in body["outputs"] if o["name"] == "probabilities")["data"]
        assert proba == pytest.approx(list(serial[k]), abs=1e-6), k
    assert refused
    for r in refused:
        assert_error(r, 422, "region", "UTF-8")
