"""The two hot paths, v1 predict and OIP infer, from raw body to response bytes.

The FastAPI routes and the ASGI fast path (`fastpath.py`) both call these, so a request is
handled the same way whichever way it came in.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from modelloop.service import oip
from modelloop.service.body import ascii_digits, parse_json
from modelloop.service.errors import NotFound, PayloadTooLarge, ServiceError, Unprocessable
from modelloop.service.ids import Block, check_prediction_id, row_ids
from modelloop.service.models import Slot
from modelloop.service.served import Outputs, ServedModel
from modelloop.service.state import Service
from modelloop.service.versions import parse_version, shown
from modelloop.store.log import Chunk, LogRow

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    body: bytes
    media_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


Tensor = tuple[str, str, list[int], np.ndarray]  # name, datatype, shape, values

UNKNOWN_MODEL = "_unknown"  # not a valid model name, so it never collides with one


def metric_model(service: Service, model: str) -> str:
    """The `model` label: the name if it is served, else one fixed value, so that callers
    asking for made-up names cannot grow the metrics without bound."""
    return model if model in service.models.active else UNKNOWN_MODEL


def _instances(body: Any, max_instances: int) -> tuple[list[Any], list[str] | None]:
    if type(body) is not dict:
        raise Unprocessable('body must be an object like {"instances": [{...}]}')
    instances = body.get("instances")
    if type(instances) is not list:
        raise Unprocessable('"instances" must be a list of objects, one per row')
    if not instances:
        raise Unprocessable('"instances" is empty; send at least one row')
    if len(instances) > max_instances:
        raise PayloadTooLarge(
            f"{len(instances)} instances is more than the limit of {max_instances} per request"
        )
    extra = set(body) - {"instances", "ids"}
    if extra:
        raise Unprocessable(f"unknown field {sorted(extra)[0]!r}; expected instances and ids")
    if "ids" not in body:
        return instances, None
    ids = body["ids"]
    if type(ids) is not list or len(ids) != len(instances):
        raise Unprocessable('"ids" must be a list with one id per instance')
    for i, pid in enumerate(ids):
        check_prediction_id(pid, f"ids[{i}]")
    if len(set(ids)) != len(ids):
        raise Unprocessable('"ids" must be unique within a request')
    return instances, ids


def _columns(served: ServedModel, req: oip.InferRequest) -> list[list[Any]]:
    names = served.schema.names
    missing = [n for n in names if n not in req.inputs]
    if missing:
        raise Unprocessable(f"missing input {missing[0]!r}; the model takes {', '.join(names)}")
    unknown = sorted(set(req.inputs) - set(names))
    if unknown:
        raise Unprocessable(f"unknown input {unknown[0]!r}; the model takes {', '.join(names)}")
    cols: list[list[Any]] = []
    for name, numeric in zip(names, served.schema.numeric, strict=True):
        arr = req.inputs[name]
        if numeric:
            cols.append(oip.numeric_column(name, arr))
        else:
            if arr.dtype != object:
                raise Unprocessable(f"input {name!r} is categorical; send BYTES")
            cols.append(arr.tolist())
    return cols


def _tensors(served: ServedModel, outputs: Outputs, rows: int) -> list[Tensor]:
    names = served.metadata.outputs
    if served.classification:
        labels = np.asarray(outputs.labels)
        label_type = "BYTES" if labels.dtype.kind in "OUS" else "INT64"
        proba = np.asarray(outputs.probabilities, dtype=np.float32)
        return [
            (names[0], label_type, [rows], labels),
            (names[1], "FP32", list(proba.shape), proba),
        ]
    values = np.asarray(outputs.labels, dtype=np.float32).reshape(rows, 1)
    return [(names[0], "FP32", [rows, 1], values)]


@dataclass(frozen=True)
class Inferred:
    """An OIP inference done and logged, for a protocol to encode: the requested outputs."""

    served: ServedModel
    request: oip.InferRequest
    tensors: list[Tensor]
    id: str
    prediction_ids: list[str]


def _select(tensors: list[Tensor], requested: list[str] | None) -> list[Tensor]:
    if requested is None:
        return tensors
    known = {t[0] for t in tensors}
    for name in requested:
        if name not in known:
            raise Unprocessable(f"unknown output {name!r}; outputs are {sorted(known)}")
    return [t for t in tensors if t[0] in requested]


def _respond(done: Inferred) -> Reply:
    served, req = done.served, done.request
    out_json: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, dtype, shape, arr in done.tensors:
        entry: dict[str, Any] = {"name": name, "datatype": dtype, "shape": shape}
        if req.binary_all or name in req.binary_outputs:
            blob = oip.tensor_bytes(dtype, arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = (
                [str(v) for v in arr.ravel().tolist()]
                if dtype == "BYTES"
                else (arr.ravel().tolist())
            )
        out_json.append(entry)
    header = orjson.dumps(
        {
            "model_name": served.name,
            "model_version": served.version_label,
            "id": done.id,
            "parameters": {"prediction_ids": ",".join(done.prediction_ids)},
            "outputs": out_json,
        }
    )
    if not blobs:
        return Reply(header)
    return Reply(
        header + b"".join(blobs),
        "application/octet-stream",
        {"inference-header-content-length": str(len(header))},
    )


def _chunk(
    served: ServedModel,
    block: Block,
    now: float,
    latency: float,
    columns: list[list[Any]],
    outputs: Outputs,
) -> Chunk:
    """A request's predictions under generated ids, for the log (`columns`: as sent)."""
    return Chunk(
        served.name,
        served.version,
        block.token,
        block.first,
        block.tag,
        block.id,
        now,
        latency,
        served.schema.names,
        columns,
        outputs.labels,
        outputs.probabilities,
        served.class_keys,
    )


def _rows(
    served: ServedModel,
    rid: str,
    now: float,
    latency: float,
    columns: list[list[Any]],
    outputs: Outputs,
) -> list[LogRow]:
    """A request's predictions under the caller's id `rid` as log rows (a NaN logged as null)."""
    block = Block("", 0, b"", rid)
    return _chunk(served, block, now, latency, columns, outputs).log_rows()


class Predictor:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings
        self.durable = service.settings.durable
        self.requests = service.metrics.requests
        self.seconds = service.metrics.request_seconds

    async def slot(self, model: str, version: str | None, v1: bool = False) -> Slot:
        if version is None:
            return self.service.models.get(model)
        number = parse_version(version)
        if number is None:
            if v1 and not ascii_digits(version):  # v1 versions are integers
                raise Unprocessable(f"version {shown(version)} is not a version number")
            raise NotFound(f"model {model!r} has no version {shown(version)}")
        return await self.service.models.get_version(model, number)

    def _count(self, model: str, version: str, endpoint: str, code: int, start: float) -> None:
        label = metric_model(self.service, model)
        self.requests.labels(label, version, endpoint, str(code)).inc()
        self.seconds.labels(label, endpoint).observe(time.perf_counter() - start)

    async def v1(self, model: str, version: str | None, raw: bytes) -> Reply:
        start = time.perf_counter()
        endpoint = "predict" if version is None else "predict_version"
        code, version_label = 500, ""
        try:
            instances, ids = _instances(parse_json(raw), self.settings.max_instances)
            slot = await self.slot(model, version, v1=True)
            served = slot.served
            version_label = served.version_label
            columns, exact = served.schema.columns(instances)
            n = len(instances)
            outputs = await slot.batcher.predict(columns, n)
            now = time.time()
            latency = (time.perf_counter() - start) * 1000.0
            formatted = served.format(outputs)
            name, number = served.name, served.version
            entry: list[LogRow] | Chunk
            if ids is None:
                block = self.service.ids.block(n)
                ids = row_ids(block.id, n)
                if not exact:  # the values as sent, not as the graph takes them
                    columns = [list(map(itemgetter(f), instances)) for f in served.schema.names]
                entry = _chunk(served, block, now, latency, columns, outputs)
            else:
                entry = [
                    {
                        "id": pid,
                        "ts": now,
                        "model": name,
                        "version": number,
                        "features": instance,
                        "output": out,
                        "latency_ms": latency,
                    }
                    for pid, instance, out in zip(ids, instances, formatted, strict=True)
                ]
            preds = [{"id": pid, **out} for pid, out in zip(ids, formatted, strict=True)]
            await self.service.log.put(entry, len(raw))
            if self.durable:
                await self.service.log.written()
            code = 200
            return Reply(orjson.dumps({"model": name, "version": number, "predictions": preds}))
        except ServiceError as e:
            code = e.status
            raise
        finally:
            self._count(model, version_label, endpoint, code, start)

    async def infer(
        self, model: str, version: str | None, raw: bytes, header_length: str | None
    ) -> Reply:
        """OIP REST: the JSON (or binary extension) body in, its reply out."""
        done = await self.infer_request(
            model, version, lambda: oip.parse_request(raw, header_length), len(raw), "infer"
        )
        return _respond(done)

    async def infer_request(
        self,
        model: str,
        version: str | None,
        decode: Callable[[], oip.InferRequest],
        size: int,
        endpoint: str,
    ) -> Inferred:
        """One OIP inference, whichever protocol carried it: `decode` turns its message into
        a checked request (its errors are counted like the rest); `size` is the message's
        byte length, for the log queue's memory bound; `endpoint` the metrics label."""
        start = time.perf_counter()
        code, version_label = 500, ""
        try:
            # The model first: a request for one that does not exist is a 404, whatever its body.
            slot = await self.slot(model, version)
            req = decode()
            if req.rows > self.settings.max_instances:
                raise PayloadTooLarge(
                    f"{req.rows} rows is more than the limit of "
                    f"{self.settings.max_instances} per request"
                )
            served = slot.served
            version_label = served.version_label
            columns = _columns(served, req)
            outputs = await slot.batcher.predict(columns, req.rows)
            now = time.time()
            latency = (time.perf_counter() - start) * 1000.0
            entry: list[LogRow] | Chunk
            if req.id is None:
                block = self.service.ids.block(req.rows)
                rid = block.id
                entry = _chunk(served, block, now, latency, columns, outputs)
            else:
                rid = req.id
                entry = _rows(served, rid, now, latency, columns, outputs)
            ids = row_ids(rid, req.rows)
            tensors = _select(_tensors(served, outputs, req.rows), req.outputs)
            await self.service.log.put(entry, size)
            if self.durable:
                await self.service.log.written()
            code = 200
            return Inferred(served, req, tensors, rid, ids)
        except ServiceError as e:
            code = e.status
            raise
        finally:
            self._count(model, version_label, endpoint, code, start)
