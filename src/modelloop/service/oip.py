"""Open Inference Protocol v2 tensors: JSON and the binary tensor data extension."""

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelloop.service.body import ascii_digits
from modelloop.service.errors import BadRequest, Unprocessable
from modelloop.service.ids import check_prediction_id
from modelloop.service.inputs import MAX_STRING
from modelloop.service.served import ServedModel

HEADER_LENGTH = "inference-header-content-length"

NUMPY_OF = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
NUMERIC_IN = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]  # name -> array of shape (rows,)
    rows: int
    outputs: list[str] | None  # requested output names, None = all
    binary_outputs: set[str]
    binary_all: bool


def _bytes_elements(name: str, raw: bytes, count: int | None) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise BadRequest("BYTES tensor data is truncated")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise BadRequest("BYTES tensor data is truncated")
        if n > 4 * MAX_STRING:  # more bytes than MAX_STRING characters can take in UTF-8
            raise _too_long(name, len(out))
        try:
            out.append(raw[pos : pos + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise _not_utf8(name, len(out)) from None
        pos += n
    if count is not None and len(out) != count:
        raise Unprocessable(f"BYTES tensor holds {len(out)} elements, its shape says {count}")
    check_strings(name, out)
    return out


def _too_long(name: str, index: int) -> Unprocessable:
    return Unprocessable(f"input {name!r}: element {index} is longer than {MAX_STRING} characters")


def _not_utf8(name: str, index: int) -> Unprocessable:
    return Unprocessable(f"input {name!r}: element {index} is not valid UTF-8")


def check_strings(name: str, values: list[str]) -> None:
    """BYTES values as the v1 API takes categories: valid UTF-8 (JSON parsed by the stdlib
    lets a lone surrogate such as "\\ud800" through, and ONNX Runtime then fails the whole
    merged batch on it) and at most MAX_STRING characters. One pass over the joined values in
    C; a Python loop only to name the culprit."""
    joined = "".join(values)
    if not joined.isascii():  # O(1): a flag of the string (surrogates are not ASCII)
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            for i, v in enumerate(values):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise _not_utf8(name, i) from None
    if len(joined) > MAX_STRING:
        for i, v in enumerate(values):
            if len(v) > MAX_STRING:
                raise _too_long(name, i)


def encode_bytes(values: list[str]) -> bytes:
    parts = []
    for v in values:
        b = v.encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def tensor_bytes(datatype: str, arr: np.ndarray) -> bytes:
    """An output's raw bytes: row-major values, BYTES as length-prefixed UTF-8."""
    if datatype == "BYTES":
        return encode_bytes([str(v) for v in arr.ravel().tolist()])
    return np.ascontiguousarray(arr, dtype=NUMPY_OF[datatype]).tobytes()


def _shape_rows(name: str, shape: Any) -> tuple[int, int]:
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or any(type(d) is not int or d < 0 for d in shape)
    ):
        raise Unprocessable(f"input {name!r}: shape must be [rows] or [rows, 1]")
    if len(shape) == 2 and shape[1] != 1:
        raise Unprocessable(
            f"input {name!r}: shape {shape} has {shape[1]} columns; each "
            "feature is its own input of shape [rows, 1]"
        )
    return shape[0], shape[0]


def _flatten(data: list[Any]) -> list[Any]:
    """The values of row-major nested lists, in order (iteratively: nesting may be deep)."""
    if not data or type(data[0]) is not list:
        return data
    flat: list[Any] = []
    stack: list[Iterator[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _parameters(where: str, value: Any) -> dict[str, Any]:
    """A `parameters` object: absent or null is empty; anything else but an object is a 422."""
    if value is None:
        return {}
    if type(value) is not dict:
        raise Unprocessable(f"{where}parameters must be an object")
    return value


def _lenient_json(raw: bytes, error: Exception) -> Any:
    """Stock clients write NaN (a missing value) into JSON tensors; accept it here only."""
    if b"NaN" not in raw and b"Infinity" not in raw:
        raise BadRequest(f"inference request is not valid JSON: {error}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"inference request is not valid JSON: {e}") from None


def check_tensor(name: str, datatype: Any, shape: Any) -> tuple[str, int]:
    """The datatype and element count of an input tensor the service takes."""
    count, _ = _shape_rows(name, shape)
    if type(datatype) is not str or (datatype != "BYTES" and datatype not in NUMPY_OF):
        raise Unprocessable(f"input {name!r}: datatype {datatype!r} is not supported")
    return datatype, count


def raw_tensor(name: str, datatype: str, count: int, raw: bytes) -> np.ndarray:
    """An input from its raw bytes: the binary extension over HTTP, raw contents over gRPC."""
    if datatype == "BYTES":
        return np.array(_bytes_elements(name, raw, count), dtype=object)
    itemsize = np.dtype(NUMPY_OF[datatype]).itemsize
    if len(raw) != count * itemsize:
        raise Unprocessable(f"input {name!r}: {len(raw)} bytes for {count} {datatype} values")
    return np.frombuffer(raw, dtype=NUMPY_OF[datatype])


def typed_tensor(name: str, datatype: str, count: int, values: list[Any], shape: Any) -> np.ndarray:
    """An input from its values in order: JSON data over HTTP, typed contents over gRPC
    (BYTES as str, already decoded)."""
    if len(values) != count:
        raise Unprocessable(f"input {name!r}: {len(values)} values for shape {shape}")
    if datatype == "BYTES":
        if not all(type(v) is str for v in values):
            raise Unprocessable(f"input {name!r}: BYTES data must be strings")
        check_strings(name, values)
        return np.array(values, dtype=object)
    if not all(type(v) in (int, float) for v in values):
        raise Unprocessable(f"input {name!r}: {datatype} data must be numbers")
    try:
        # A number too large for the type is the caller's mistake, not an inf.
        with np.errstate(over="raise"):
            return np.array(values, dtype=NUMPY_OF[datatype])
    except (OverflowError, ValueError, FloatingPointError):
        raise Unprocessable(f"input {name!r}: a value does not fit {datatype}") from None


def utf8_elements(name: str, values: list[bytes]) -> list[str]:
    """BYTES elements sent as bytes (gRPC typed contents), as the strings the model takes."""
    out: list[str] = []
    for i, v in enumerate(values):
        if len(v) > 4 * MAX_STRING:
            raise _too_long(name, i)
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            raise _not_utf8(name, i) from None
    return out


class Inputs:
    """The decoded input tensors of one request, checked as they are added."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.rows: int | None = None

    def add(self, name: str, arr: np.ndarray) -> None:
        n = len(arr)
        if name in self.arrays:
            raise Unprocessable(f"input {name!r} appears twice")
        if self.rows is not None and n != self.rows:
            raise Unprocessable(f"input {name!r} has {n} rows, others have {self.rows}")
        self.rows = n
        self.arrays[name] = arr


def make_request(
    rid: Any,
    inputs: Inputs,
    outputs: list[str] | None,
    binary_outputs: set[str] | None = None,
    binary_all: bool = False,
) -> InferRequest:
    """The request once its tensors are decoded, whichever protocol carried it."""
    rows = inputs.rows
    if rows is None:
        raise Unprocessable('"inputs" must be a non-empty list of tensors')
    if rows == 0:
        raise Unprocessable("inputs have zero rows")
    if rid is not None and type(rid) is not str:
        raise Unprocessable('"id" must be a string')
    if rid:  # "" is no id, as for stock clients
        # Logged as `<id>:<row>`: the limit holds for the longest of those.
        check_prediction_id(rid, '"id"', suffix=1 + len(str(rows - 1)))
    return InferRequest(
        id=rid or None,
        inputs=inputs.arrays,
        rows=rows,
        outputs=outputs,
        binary_outputs=binary_outputs or set(),
        binary_all=binary_all,
    )


def parse_request(raw: bytes, header_length: str | None) -> InferRequest:
    binary = b""
    if header_length is not None:
        # Digits counted before `int` reads them (it refuses more than 4,300: a 500).
        if (
            len(header_length) > 19
            or not ascii_digits(header_length)
            or int(header_length) > len(raw)
        ):
            raise BadRequest(f"{HEADER_LENGTH} must be the JSON header's byte length")
        json_part, binary = raw[: int(header_length)], raw[int(header_length) :]
    else:
        json_part = raw
    if not json_part:
        raise BadRequest("request body is empty; send an inference request")
    try:
        body = orjson.loads(json_part)
    except orjson.JSONDecodeError as e:
        body = _lenient_json(json_part, e)
    if type(body) is not dict:
        raise Unprocessable("inference request must be a JSON object")
    inputs_in = body.get("inputs")
    if type(inputs_in) is not list or not inputs_in:
        raise Unprocessable('"inputs" must be a non-empty list of tensors')
    inputs = Inputs()
    offset = 0
    for t in inputs_in:
        if type(t) is not dict or type(t.get("name")) is not str:
            raise Unprocessable("each input needs a name, shape, datatype and data")
        name = t["name"]
        dtype, count = check_tensor(name, t.get("datatype"), t.get("shape"))
        size = _parameters(f"input {name!r}: ", t.get("parameters")).get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input {name!r}: binary_data_size {size!r} runs past the body")
            arr = raw_tensor(name, dtype, count, binary[offset : offset + size])
            offset += size
        else:
            if "data" not in t:
                raise Unprocessable(f"input {name!r} has no data")
            if type(t["data"]) is not list:
                raise Unprocessable(f"input {name!r}: data must be a list")
            arr = typed_tensor(name, dtype, count, _flatten(t["data"]), t.get("shape"))
        inputs.add(name, arr)
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    binary_all = bool(_parameters("", body.get("parameters")).get("binary_data_output"))
    outputs_in = body.get("outputs")
    requested: list[str] | None = None
    binary_outputs: set[str] = set()
    if outputs_in is not None:
        if type(outputs_in) is not list:
            raise Unprocessable('"outputs" must be a list')
        requested = []
        for o in outputs_in:
            if type(o) is not dict or type(o.get("name")) is not str:
                raise Unprocessable("each requested output needs a name")
            requested.append(o["name"])
            if _parameters(f"output {o['name']!r}: ", o.get("parameters")).get("binary_data"):
                binary_outputs.add(o["name"])
    return make_request(body.get("id"), inputs, requested, binary_outputs, binary_all)


def numeric_column(name: str, arr: np.ndarray) -> list[Any]:
    if arr.dtype == object:
        raise Unprocessable(f"input {name!r} is numeric; send FP32 (or another number type)")
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values) | np.isnan(values)):
        raise Unprocessable(f"input {name!r} holds an infinite value")
    if np.nanmax(np.abs(values), initial=0.0) > 3.4028234663852886e38:
        raise Unprocessable(f"input {name!r} holds a value outside the float32 range")
    return list(values.tolist())


def model_metadata(served: ServedModel, versions: list[int]) -> dict[str, Any]:
    """A model's OIP metadata: one [-1, 1] input per feature, its outputs, its versions."""
    meta = served.metadata
    inputs = [
        {"name": f.name, "datatype": "FP32" if f.kind == "numeric" else "BYTES", "shape": [-1, 1]}
        for f in meta.features
    ]
    if served.classification:
        label_type = "BYTES" if any(isinstance(c, str) for c in meta.classes) else "INT64"
        outputs = [
            {"name": meta.outputs[0], "datatype": label_type, "shape": [-1]},
            {"name": meta.outputs[1], "datatype": "FP32", "shape": [-1, len(meta.classes)]},
        ]
    else:
        outputs = [{"name": meta.outputs[0], "datatype": "FP32", "shape": [-1, 1]}]
    return {
        "name": meta.name,
        "versions": [str(v) for v in versions],
        "platform": "onnx",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"task": meta.task, "classes": ",".join(map(str, meta.classes))},
    }
