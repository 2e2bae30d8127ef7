"""OIP over gRPC on a real `modelloop serve` process: stock tritonclient.grpc, a client on
KServe's proto, logging and feedback by id, status codes, metrics, drain on SIGTERM, swap."""

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_helpers import KServeClient, status_of, triton_inputs, typed_request
from service_helpers import (
    CATEGORICAL,
    FEATURES,
    MODEL,
    NUMERIC,
    ServerProcess,
    copy_home,
    free_port,
    predictions_in_db,
    row,
    running_server,
    sample_sum,
)
from tritonclient.utils import InferenceServerException

from modelloop.service.grpc import grpc_predict_v2_pb2 as pb
from modelloop.store.registry import FolderRegistry


@pytest.fixture(scope="module")
def server(
    template_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = copy_home(template_home, tmp_path_factory.mktemp("grpc-home"))
    with running_server(home, {"MODELLOOP_LOG_FLUSH_SECONDS": "0.05"}) as s:
        yield s


@pytest.fixture(scope="module")
def oip(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def kserve(server: ServerProcess) -> Iterator[KServeClient]:
    client = KServeClient(server.grpc_target)
    yield client
    client.close()


def v1_predict(server: ServerProcess, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = httpx.post(server.url + f"/v1/models/{MODEL}/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    preds: list[dict[str, Any]] = r.json()["predictions"]
    return preds


def proba_of(preds: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[p["probabilities"]["no"], p["probabilities"]["yes"]] for p in preds])


def wait_logged(home: Path, ids: set[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        logged = [p for p in predictions_in_db(home) if p["id"] in ids]
        if len(logged) >= len(ids) or time.monotonic() > deadline:
            return logged
        time.sleep(0.05)


def expect_status(code: grpc.StatusCode, *words: str) -> Any:
    return _Expect(code, words)


class _Expect:
    def __init__(self, code: grpc.StatusCode, words: tuple[str, ...]) -> None:
        self.code, self.words = code, words

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        assert exc is not None, f"expected {self.code}, the call succeeded"
        if isinstance(exc, InferenceServerException):
            assert exc.status() == str(self.code), (exc.status(), exc.message())
            message = exc.message()
        else:
            assert isinstance(exc, grpc.RpcError), exc
            assert status_of(exc) == self.code, (status_of(exc), exc.details())
            message = exc.details()
        for word in self.words:
            assert word in message, (word, message)
        return True


# -- stock tritonclient.grpc -----------------------------------------------------------------


def test_triton_health_and_metadata(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live()
    assert oip.is_server_ready()
    assert oip.is_model_ready(MODEL)
    assert oip.is_model_ready(MODEL, model_version="2")
    assert not oip.is_model_ready("nope")
    assert not oip.is_model_ready(MODEL, model_version="9")
    meta = oip.get_model_metadata(MODEL, as_json=True)
    assert meta["name"] == MODEL
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnx"
    assert [i["name"] for i in meta["inputs"]] == FEATURES
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        **dict.fromkeys(NUMERIC, "FP32"),
        **dict.fromkeys(CATEGORICAL, "BYTES"),
    }
    assert all(i["shape"] == ["-1", "1"] for i in meta["inputs"])  # int64 as JSON strings
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["probabilities"]["shape"] == ["-1", "2"]
    server_meta = oip.get_server_metadata(as_json=True)
    assert server_meta["name"] == "modelloop"
    assert "binary_tensor_data" in server_meta["extensions"]
    with expect_status(grpc.StatusCode.NOT_FOUND, "nope"):
        oip.get_model_metadata("nope")
    with expect_status(grpc.StatusCode.NOT_FOUND, "version"):
        oip.get_model_metadata(MODEL, model_version="9")


def test_triton_infer_matches_v1_and_is_logged_for_feedback(
    server: ServerProcess, oip: triton.InferenceServerClient
) -> None:
    rows = [row(i) for i in range(5)]
    result = oip.infer(MODEL, triton_inputs(rows), request_id="grpc-req-1")
    response = result.get_response()
    assert response.model_name == MODEL
    assert response.model_version == "1"
    assert response.id == "grpc-req-1"
    labels = [v.decode() for v in result.as_numpy("label").tolist()]
    proba = result.as_numpy("probabilities")
    assert proba.shape == (5, 2)
    assert proba.dtype == np.float32
    preds = v1_predict(server, rows)
    assert labels == [p["label"] for p in preds]
    np.testing.assert_allclose(proba, proba_of(preds), atol=1e-6)
    ids = response.parameters["prediction_ids"].string_param.split(",")
    assert ids == [f"grpc-req-1:{i}" for i in range(5)]
    logged = wait_logged(server.home, set(ids))
    assert sorted(p["id"] for p in logged) == sorted(ids)  # each once
    feedback = {"items": [{"id": pid, "label": "yes"} for pid in ids]}
    fb = httpx.post(server.url + "/v1/feedback", json=feedback, timeout=30.0)
    assert fb.status_code == 200, fb.text
    assert fb.json()["matched"] == 5


def test_triton_without_an_id_gets_generated_ids_logged(
    server: ServerProcess, oip: triton.InferenceServerClient
) -> None:
    result = oip.infer(MODEL, triton_inputs([row(7), row(8)]))
    response = result.get_response()
    assert response.id.startswith("~"), response.id  # generated, not a caller's namespace
    ids = response.parameters["prediction_ids"].string_param.split(",")
    assert ids == [f"{response.id}:0", f"{response.id}:1"]
    assert len(wait_logged(server.home, set(ids))) == 2


def test_triton_int64_inputs_and_requested_outputs(oip: triton.InferenceServerClient) -> None:
    rows = [row(i) for i in range(3)]
    as_int = ("age", "tenure_months", "support_tickets")
    result = oip.infer(
        MODEL,
        triton_inputs(rows, int64=as_int),
        outputs=[triton.InferRequestedOutput("probabilities")],
    )
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    expected = oip.infer(MODEL, triton_inputs(rows)).as_numpy("probabilities")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)


def test_triton_on_a_version(oip: triton.InferenceServerClient) -> None:
    result = oip.infer(MODEL, triton_inputs([row(1)]), model_version="2")
    assert result.get_response().model_version == "2"
    with expect_status(grpc.StatusCode.NOT_FOUND, "version"):
        oip.infer(MODEL, triton_inputs([row(1)]), model_version="9")
    with expect_status(grpc.StatusCode.NOT_FOUND, "nope"):
        oip.infer("nope", triton_inputs([row(1)]))


# -- a client on KServe's proto: typed contents ----------------------------------------------


def test_kserve_typed_contents_match_raw_contents(
    kserve: KServeClient, oip: triton.InferenceServerClient
) -> None:
    rows = [row(i) for i in range(4)]
    reply = kserve.infer(typed_request(rows, MODEL, rid="typed-1", int64=("support_tickets",)))
    assert reply.id == "typed-1"
    assert [o.name for o in reply.outputs] == ["label", "probabilities"]
    proba = np.frombuffer(reply.raw_output_contents[1], dtype=np.float32).reshape(4, 2)
    expected = oip.infer(MODEL, triton_inputs(rows)).as_numpy("probabilities")
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    meta = kserve.model_metadata(MODEL)
    assert [t.name for t in meta.inputs] == FEATURES
    assert kserve.server_ready()


# -- errors ----------------------------------------------------------------------------------


def bad_requests() -> list[tuple[str, pb.ModelInferRequest | bytes, str]]:
    missing = typed_request([row(0)], MODEL)
    del missing.inputs[0]
    wrong_type = typed_request([row(0)], MODEL)
    wrong_type.inputs[5].datatype = "FP32"  # region
    wrong_type.inputs[5].contents.fp32_contents.append(1.0)
    not_utf8 = typed_request([row(0)], MODEL)
    not_utf8.inputs[5].contents.bytes_contents[0] = b"\xff\xfe"
    short_raw = typed_request([row(0)], MODEL)
    for t in short_raw.inputs:
        t.ClearField("contents")
    short_raw.raw_input_contents.extend([b"\x00\x00"] * len(short_raw.inputs))
    too_few_raw = typed_request([row(0)], MODEL)
    too_few_raw.raw_input_contents.append(b"\x00\x00\x80\x3f")
    count = typed_request([row(0), row(1)], MODEL)
    count.inputs[0].contents.fp32_contents.append(3.0)
    shape = typed_request([row(0)], MODEL)
    shape.inputs[0].shape[:] = [1, 2]
    infinite = typed_request([row(0)], MODEL)
    infinite.inputs[0].contents.fp32_contents[0] = float("inf")
    bad_id = typed_request([row(0)], MODEL, rid="~looks-generated")
    unknown_output = typed_request([row(0)], MODEL)
    unknown_output.outputs.add(name="nope")
    return [
        ("missing input", missing, "missing input"),
        ("wrong datatype", wrong_type, "categorical"),
        ("not utf-8", not_utf8, "UTF-8"),
        ("raw too short", short_raw, "bytes for"),
        ("raw for some inputs", too_few_raw, "raw_input_contents"),
        ("values and shape disagree", count, "values for shape"),
        ("two columns", shape, "columns"),
        ("infinite", infinite, "infinite"),
        ("generated-looking id", bad_id, "id"),
        ("unknown output", unknown_output, "unknown output"),
        ("not a message", b"\xff\xff\xff\xff", "does not parse"),
    ]


def test_bad_input_is_invalid_argument_and_concurrent_good_calls_succeed(
    server: ServerProcess, kserve: KServeClient
) -> None:
    good: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def load(t: int) -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            i = 0
            while not stop.is_set():
                body = typed_request([row(t * 1000 + i)], MODEL).SerializeToString()
                i += 1
                try:
                    pb.ModelInferResponse.FromString(call(body, timeout=30.0))
                    good.append(1)
                except grpc.RpcError as e:
                    errors.append(f"{status_of(e)}: {e.details()}")

    threads = [threading.Thread(target=load, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            for what, request, word in bad_requests():
                body = request if isinstance(request, bytes) else request.SerializeToString()
                with expect_status(grpc.StatusCode.INVALID_ARGUMENT, word):
                    kserve.raw("ModelInfer", body)
                del what
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert len(good) > 10


def test_more_rows_than_the_limit_and_messages_over_the_body_limit(kserve: KServeClient) -> None:
    rows = [row(i) for i in range(1001)]
    with expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "limit of 1000"):
        kserve.infer(typed_request(rows, MODEL))
    huge = typed_request([row(0)], MODEL)
    huge.inputs[5].contents.bytes_contents[0] = b"x" * (2 << 20)
    with expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED):
        kserve.infer(huge)


def test_grpc_calls_are_counted_under_their_own_endpoint(
    server: ServerProcess, oip: triton.InferenceServerClient
) -> None:
    before = server.metrics()
    oip.infer(MODEL, triton_inputs([row(3)]))
    with contextlib.suppress(InferenceServerException):
        oip.infer(MODEL, triton_inputs([row(3)])[1:])
    after = server.metrics()
    counted = "modelloop_requests_total"

    def delta(code: str) -> float:
        labels = {"endpoint": "grpc_infer", "code": code}
        return sample_sum(after, counted, **labels) - sample_sum(before, counted, **labels)

    assert delta("200") == 1
    assert delta("422") == 1
    assert sample_sum(after, "modelloop_request_duration_seconds_count", endpoint="grpc_infer")


# -- processes: off, drain, swap -------------------------------------------------------------


def test_grpc_port_zero_turns_grpc_off(template_home: Path, tmp_path: Path) -> None:
    home = copy_home(template_home, tmp_path / "home")
    port = free_port()
    with running_server(home, {"MODELLOOP_GRPC_PORT": "0"}):
        client = KServeClient(f"127.0.0.1:{port}")
        with expect_status(grpc.StatusCode.UNAVAILABLE):
            client.raw("ServerLive", b"", timeout=2.0)
        client.close()


def test_a_grpc_port_in_use_stops_the_start_with_the_reason(
    template_home: Path, tmp_path: Path
) -> None:
    home = copy_home(template_home, tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(home, {"MODELLOOP_GRPC_PORT": str(port)})
        with pytest.raises(AssertionError, match=f"cannot listen for gRPC on 127.0.0.1:{port}"):
            server.start()
        server.stop()


def test_sigterm_finishes_in_flight_grpc_calls_then_drains_the_log(
    template_home: Path, tmp_path: Path
) -> None:
    home = copy_home(template_home, tmp_path / "home")
    # Durable answers wait for their commit, which waits up to 2 s: calls are in flight.
    env = {"MODELLOOP_DURABLE": "true", "MODELLOOP_LOG_FLUSH_SECONDS": "2"}
    results: list[str] = []
    server = ServerProcess(home, env).start()
    try:
        client = triton.InferenceServerClient(url=server.grpc_target)

        def call(i: int) -> None:
            try:
                r = client.infer(MODEL, triton_inputs([row(i)]), request_id=f"drain-{i}")
                results.append(r.get_response().id)
            except InferenceServerException as e:
                results.append(f"error {e.status()}: {e.message()}")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        server.terminate()
        time.sleep(0.3)
        with expect_status(grpc.StatusCode.UNAVAILABLE):
            client.infer(MODEL, triton_inputs([row(99)]), client_timeout=5.0)
        for t in threads:
            t.join(30)
        assert server.wait(40) == 0, server.log()
        client.close()
    finally:
        server.stop()
    assert sorted(results) == sorted(f"drain-{i}" for i in range(8)), results
    logged = {p["id"] for p in predictions_in_db(home)}
    assert {f"drain-{i}:0" for i in range(8)} <= logged


def test_hot_swap_under_grpc_load_fails_no_call(template_home: Path, tmp_path: Path) -> None:
    home = copy_home(template_home, tmp_path / "home")
    registry = FolderRegistry(home / "registry")
    versions: set[str] = set()
    errors: list[str] = []
    answered: list[int] = []
    stop = threading.Event()
    with running_server(home, {"MODELLOOP_POLL_INTERVAL": "0.2"}) as server:

        def load(t: int) -> None:
            client = triton.InferenceServerClient(url=server.grpc_target)
            i = 0
            while not stop.is_set():
                try:
                    r = client.infer(MODEL, triton_inputs([row(t * 1000 + i)]))
                    versions.add(r.get_response().model_version)
                    answered.append(1)
                except InferenceServerException as e:
                    errors.append(f"{e.status()}: {e.message()}")
                i += 1
            client.close()

        threads = [threading.Thread(target=load, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(6):
                target = 2 if i % 2 == 0 else 1
                registry.promote(MODEL, target, "test", f"swap {i}")
                deadline = time.monotonic() + 10
                while str(target) not in versions or len(answered) < 20 * (i + 1):
                    assert time.monotonic() < deadline, f"version {target} never answered"
                    time.sleep(0.05)
                versions.discard(str(target))
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert not errors, errors[:3]


def test_a_log_that_takes_no_rows_answers_unavailable_with_retry_after(
    template_home: Path, tmp_path: Path
) -> None:
    from test_svc_log_outage import env, unwritable_spool
    from test_svc_outage import sqlite_outage

    home = copy_home(template_home, tmp_path / "home")
    codes: dict[str, int] = {}
    refusals: list[tuple[str, dict[str, str]]] = []
    with (
        unwritable_spool(home, "file"),
        running_server(home, env()) as server,
        KServeClient(server.grpc_target) as client,
    ):
        client.infer(typed_request([row(0)], MODEL))
        with sqlite_outage(home):
            until = time.monotonic() + 8
            i = 1
            while time.monotonic() < until and "UNAVAILABLE" not in codes:
                try:
                    client.infer(typed_request([row(i)], MODEL), timeout=15.0)
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.RpcError as e:
                    codes[status_of(e).name] = codes.get(status_of(e).name, 0) + 1
                    refusals.append((e.details(), dict(e.trailing_metadata())))
                i += 1
            # Readiness goes false once the writer has failed both the database and the spool.
            deadline = time.monotonic() + 15
            while client.server_ready():
                assert time.monotonic() < deadline, "ServerReady stayed true"
                time.sleep(0.1)
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes.get("UNAVAILABLE"), codes
    for details, trailers in refusals:
        assert "prediction log" in details, details
        assert int(trailers["retry-after"]) >= 1, trailers


def test_in_process_a_taken_grpc_port_fails_the_start_and_leaves_nothing_running(
    home: Path,
) -> None:
    from service_helpers import TestClient

    from modelloop.service.app import create_app
    from modelloop.service.grpc.server import GrpcUnavailable
    from modelloop.service.settings import ServiceSettings

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = ServiceSettings(home=home, database_url=None, grpc_port=port)
        with pytest.raises(GrpcUnavailable, match=str(port)), TestClient(create_app(settings)):
            pass
    assert not [t for t in threading.enumerate() if t.name == "log-writer" and t.is_alive()]
