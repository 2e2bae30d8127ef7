"""gRPC clients for the service tests: a raw one on the KServe proto, and tritonclient inputs.

`kserve` (the PyPI package) cannot be installed next to our pinned fastapi, numpy and
protobuf: its stock InferenceGRPCClient runs from a venv of its own in
test_svc_grpc_kserve.py. `KServeClient` here speaks the same wire format from KServe's own
`grpc_predict_v2.proto` (the file our stubs are built from) with plain grpcio calls, so it can
also send what stock clients never do: typed contents, malformed messages.
"""

from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as triton
from service_helpers import FEATURES, NUMERIC

from modelloop.service.grpc import grpc_predict_v2_pb2 as pb

SERVICE = "/inference.GRPCInferenceService/"


class KServeClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "KServeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, method: str, body: bytes, timeout: float = 30.0) -> bytes:
        call = self.channel.unary_unary(SERVICE + method)
        reply: bytes = call(body, timeout=timeout)
        return reply

    def infer(self, request: pb.ModelInferRequest, timeout: float = 30.0) -> pb.ModelInferResponse:
        return pb.ModelInferResponse.FromString(
            self.raw("ModelInfer", request.SerializeToString(), timeout)
        )

    def model_metadata(self, name: str, version: str = "") -> pb.ModelMetadataResponse:
        body = pb.ModelMetadataRequest(name=name, version=version).SerializeToString()
        return pb.ModelMetadataResponse.FromString(self.raw("ModelMetadata", body))

    def server_ready(self) -> bool:
        reply = self.raw("ServerReady", pb.ServerReadyRequest().SerializeToString())
        return pb.ServerReadyResponse.FromString(reply).ready


def typed_request(
    rows: list[dict[str, Any]], model: str, rid: str = "", int64: tuple[str, ...] = ()
) -> pb.ModelInferRequest:
    """Typed contents: FP32 numbers (INT64 for the features in `int64`), BYTES categories."""
    req = pb.ModelInferRequest(model_name=model, id=rid)
    for name in FEATURES:
        t = req.inputs.add(name=name, shape=[len(rows), 1])
        if name in int64:
            t.datatype = "INT64"
            t.contents.int64_contents.extend(int(r[name]) for r in rows)
        elif name in NUMERIC:
            t.datatype = "FP32"
            t.contents.fp32_contents.extend(float(r[name]) for r in rows)
        else:
            t.datatype = "BYTES"
            t.contents.bytes_contents.extend(r[name].encode() for r in rows)
    return req


def triton_inputs(rows: list[dict[str, Any]], int64: tuple[str, ...] = ()) -> list[Any]:
    """tritonclient's inputs: raw contents, as it always sends them."""
    inputs = []
    for name in FEATURES:
        if name in int64:
            data = np.array([[r[name]] for r in rows], dtype=np.int64)
            inp = triton.InferInput(name, list(data.shape), "INT64")
        elif name in NUMERIC:
            data = np.array([[r[name]] for r in rows], dtype=np.float32)
            inp = triton.InferInput(name, list(data.shape), "FP32")
        else:
            data = np.array([[r[name]] for r in rows], dtype=object)
            inp = triton.InferInput(name, list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        inputs.append(inp)
    return inputs


def status_of(error: Any) -> grpc.StatusCode:
    return error.code()  # type: ignore[no-any-return]
