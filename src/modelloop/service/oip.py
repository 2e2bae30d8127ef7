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
    inputs: dict[str, np.ndarray] = {}
    rows: int | None = None
    offset = 0
    for t in inputs_in:
        if type(t) is not dict or type(t.get("name")) is not str:
            raise Unprocessable("each input needs a name, shape, datatype and data")
        name, dtype = t["name"], t.get("datatype")
        count, n = _shape_rows(name, t.get("shape"))
        if type(dtype) is not str or (dtype != "BYTES" and dtype not in NUMPY_OF):
            raise Unprocessable(f"input {name!r}: datatype {dtype!r} is not supported")
        size = _parameters(f"input {name!r}: ", t.get("parameters")).get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input {name!r}: binary_data_size {size!r} runs past the body")
            chunk = binary[offset : offset + size]
            offset += size
            if dtype == "BYTES":
                arr = np.array(_bytes_elements(name, chunk, count), dtype=object)
            else:
                itemsize = np.dtype(NUMPY_OF[dtype]).itemsize
                if size != count * itemsize:
                    raise Unprocessable(f"input {name!r}: {size} bytes for {count} {dtype} values")
                arr = np.frombuffer(chunk, dtype=NUMPY_OF[dtype])
        else:
            if "data" not in t:
                raise Unprocessable(f"input {name!r} has no data")
            if type(t["data"]) is not list:
                raise Unprocessable(f"input {name!r}: data must be a list")
            values = _flatten(t["data"])
            if len(values) != count:
                raise Unprocessable(
                    f"input {name!r}: {len(values)} values for shape {t.get('shape')}"
                )
            if dtype == "BYTES":
                if not all(type(v) is str for v in values):
                    raise Unprocessable(f"input {name!r}: BYTES data must be strings")
                check_strings(name, values)
                arr = np.array(values, dtype=object)
            else:
                if not all(type(v) in (int, float) for v in values):
                    raise Unprocessable(f"input {name!r}: {dtype} data must be numbers")
                try:
                    # A number too large for the type is the caller's mistake, not an inf.
                    with np.errstate(over="raise"):
                        arr = np.array(values, dtype=NUMPY_OF[dtype])
                except (OverflowError, ValueError, FloatingPointError):
                    raise Unprocessable(f"input {name!r}: a value does not fit {dtype}") from None
        if name in inputs:
            raise Unprocessable(f"input {name!r} appears twice")
        if rows is not None and n != rows:
            raise Unprocessable(f"input {name!r} has {n} rows, others have {rows}")
        rows = n
        inputs[name] = arr
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    assert rows is not None
    if rows == 0:
        raise Unprocessable("inputs have zero rows")
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
    rid = body.get("id")
    if rid is not None and type(rid) is not str:
        raise Unprocessable('"id" must be a string')
    if rid:  # "" is no id, as for stock clients
        # Logged as `<id>:<row>`: the limit holds for the longest of those.
        check_prediction_id(rid, '"id"', suffix=1 + len(str(rows - 1)))
    return InferRequest(
        id=rid or None,
        inputs=inputs,
        rows=rows,
        outputs=requested,
        binary_outputs=binary_outputs,
        binary_all=binary_all,
    )


def numeric_column(name: str, arr: np.ndarray) -> list[Any]:
    if arr.dtype == object:
        raise Unprocessable(f"input {name!r} is numeric; send FP32 (or another number type)")
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values) | np.isnan(values)):
        raise Unprocessable(f"input {name!r} holds an infinite value")
    if np.nanmax(np.abs(values), initial=0.0) > 3.4028234663852886e38:
        raise Unprocessable(f"input {name!r} holds a value outside the float32 range")
    return list(values.tolist())
