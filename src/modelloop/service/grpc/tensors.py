"""gRPC messages to the predictor's checked requests, and its answers back to messages.

Decoding goes through the same functions as OIP REST (`oip.check_tensor`, `raw_tensor`,
`typed_tensor`, `Inputs`, `make_request`), so the two protocols take exactly the same input.
"""

from typing import Any

import numpy as np

from modelloop.service import oip
from modelloop.service.errors import BadRequest, Unprocessable
from modelloop.service.grpc import grpc_predict_v2_pb2 as pb
from modelloop.service.predict import Inferred

# Which field of InferTensorContents holds each datatype's values (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _typed_values(t: pb.ModelInferRequest.InferInputTensor) -> list[Any]:
    field = CONTENTS_FIELD.get(t.datatype)
    if field is None:
        raise Unprocessable(f"input {t.name!r}: {t.datatype} values must be sent as raw contents")
    values = list(getattr(t.contents, field))
    if t.datatype == "BYTES":
        return oip.utf8_elements(t.name, values)
    return values


def decode(msg: pb.ModelInferRequest) -> oip.InferRequest:
    if not msg.inputs:
        raise Unprocessable("inputs must be a non-empty list of tensors")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(
            f"raw_input_contents holds {len(raw)} tensors for {len(msg.inputs)} inputs; "
            "send one per input, in order, or none"
        )
    inputs = oip.Inputs()
    for i, t in enumerate(msg.inputs):
        shape = list(t.shape)
        datatype, count = oip.check_tensor(t.name, t.datatype, shape)
        if raw:
            if t.HasField("contents"):
                raise BadRequest(f"input {t.name!r}: contents given with raw_input_contents")
            arr = oip.raw_tensor(t.name, datatype, count, raw[i])
        else:
            arr = oip.typed_tensor(t.name, datatype, count, _typed_values(t), shape)
        inputs.add(t.name, arr)
    outputs = [o.name for o in msg.outputs] or None
    return oip.make_request(msg.id, inputs, outputs)


def encode(done: Inferred) -> pb.ModelInferResponse:
    """Outputs as raw contents, as Triton answers (stock clients read them with as_numpy);
    the prediction ids, one per row, in the `prediction_ids` parameter as over REST."""
    reply = pb.ModelInferResponse(
        model_name=done.served.name, model_version=done.served.version_label, id=done.id
    )
    reply.parameters["prediction_ids"].string_param = ",".join(done.prediction_ids)
    for name, datatype, shape, arr in done.tensors:
        reply.outputs.add(name=name, datatype=datatype, shape=shape)
        reply.raw_output_contents.append(oip.tensor_bytes(datatype, np.asarray(arr)))
    return reply


def metadata(meta: dict[str, Any]) -> pb.ModelMetadataResponse:
    """`oip.model_metadata` as the message (which has no `parameters`)."""
    reply = pb.ModelMetadataResponse(
        name=meta["name"], versions=meta["versions"], platform=meta["platform"]
    )
    for t in meta["inputs"]:
        reply.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    for t in meta["outputs"]:
        reply.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    return reply
