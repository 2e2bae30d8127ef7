"""Open Inference Protocol v2 routes, so stock clients (tritonclient, KServe) work unchanged."""

import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

import modelloop
from modelloop.service import oip
from modelloop.service.errors import (
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unavailable,
    Unprocessable,
)
from modelloop.service.models import Slot
from modelloop.service.routes_v1 import json_response, metric_model
from modelloop.service.served import Outputs, ServedModel
from modelloop.service.state import Service
from modelloop.store.predictions import LogRow


def _metadata(served: ServedModel, versions: list[int]) -> dict[str, Any]:
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


def _tensors(
    served: ServedModel, outputs: Outputs, rows: int
) -> list[tuple[str, str, list[int], np.ndarray]]:
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


def _respond(
    served: ServedModel, req: oip.InferRequest, outputs: Outputs, rid: str, ids: list[str]
) -> Response:
    tensors = _tensors(served, outputs, req.rows)
    if req.outputs is not None:
        known = {t[0] for t in tensors}
        for name in req.outputs:
            if name not in known:
                raise Unprocessable(f"unknown output {name!r}; outputs are {sorted(known)}")
        tensors = [t for t in tensors if t[0] in req.outputs]
    out_json: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, dtype, shape, arr in tensors:
        entry: dict[str, Any] = {"name": name, "datatype": dtype, "shape": shape}
        if req.binary_all or name in req.binary_outputs:
            blob = (
                oip.encode_bytes([str(v) for v in arr.ravel().tolist()])
                if dtype == "BYTES"
                else np.ascontiguousarray(arr, dtype=oip.NUMPY_OF[dtype]).tobytes()
            )
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
            "id": rid,
            "parameters": {"prediction_ids": ",".join(ids)},
            "outputs": out_json,
        }
    )
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


def oip_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["open inference protocol"])
    metrics = service.metrics

    @router.get("", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {
                "name": "modelloop",
                "version": modelloop.__version__,
                "extensions": ["binary_tensor_data"],
            }
        )

    @router.get("/health/live", summary="Liveness")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/health/ready", summary="Readiness: models loaded and not draining")
    async def ready() -> Response:
        ok = service.started and not service.draining
        return json_response({"ready": ok}, 200 if ok else 503)

    def slot_for(model: str) -> Slot:
        return service.models.get(model)

    async def slot_for_version(model: str, version: str) -> Slot:
        if not version.isdigit():
            raise NotFound(f"model {model!r} has no version {version!r}")
        return await service.models.get_version(model, int(version))

    @router.get("/models/{model}", summary="Model metadata")
    async def model_metadata(model: str) -> Response:
        slot = slot_for(model)
        return json_response(_metadata(slot.served, service.models.versions_of(model)))

    @router.get("/models/{model}/versions/{version}", summary="Model version metadata")
    async def version_metadata(model: str, version: str) -> Response:
        slot = await slot_for_version(model, version)
        return json_response(_metadata(slot.served, service.models.versions_of(model)))

    @router.get("/models/{model}/ready", summary="Model readiness")
    async def model_ready(model: str) -> Response:
        slot_for(model)
        if service.draining:
            raise Unavailable("draining")
        return json_response({"name": model, "ready": True})

    @router.get("/models/{model}/versions/{version}/ready", summary="Model version readiness")
    async def version_ready(model: str, version: str) -> Response:
        await slot_for_version(model, version)
        return json_response({"name": model, "ready": True})

    async def infer(request: Request, model: str, version: str | None) -> Response:
        start = time.perf_counter()
        code = 500
        version_label = ""
        endpoint = "infer"
        try:
            req = oip.parse_request(await request.body(), request.headers.get(oip.HEADER_LENGTH))
            if req.rows > service.settings.max_instances:
                raise PayloadTooLarge(
                    f"{req.rows} rows is more than the limit of "
                    f"{service.settings.max_instances} per request"
                )
            slot = slot_for(model) if version is None else await slot_for_version(model, version)
            served = slot.served
            version_label = served.version_label
            columns = _columns(served, req)
            outputs = await slot.batcher.predict(columns, req.rows)
            rid = req.id or service.ids.take(1)[0]
            ids = [f"{rid}:{i}" for i in range(req.rows)]
            now = time.time()
            latency = (time.perf_counter() - start) * 1000.0
            names = served.schema.names
            formatted = served.format(outputs)
            rows: list[LogRow] = []
            for i in range(req.rows):
                feats = {
                    n: (None if isinstance(c[i], float) and c[i] != c[i] else c[i])
                    for n, c in zip(names, columns, strict=True)
                }
                rows.append(
                    {
                        "id": ids[i],
                        "ts": now,
                        "model": served.name,
                        "version": served.version,
                        "features": feats,
                        "output": formatted[i],
                        "latency_ms": latency,
                    }
                )
            response = _respond(served, req, outputs, rid, ids)
            await service.log.put(rows)
            code = 200
            return response
        except ServiceError as e:
            code = e.status
            raise
        finally:
            label = metric_model(service, model)
            metrics.requests.labels(label, version_label, endpoint, str(code)).inc()
            metrics.request_seconds.labels(label, endpoint).observe(time.perf_counter() - start)

    @router.post("/models/{model}/infer", summary="Inference (JSON or binary tensors)")
    async def infer_active(model: str, request: Request) -> Response:
        return await infer(request, model, None)

    @router.post("/models/{model}/versions/{version}/infer", summary="Inference on a version")
    async def infer_version(model: str, version: str, request: Request) -> Response:
        return await infer(request, model, version)

    return router
