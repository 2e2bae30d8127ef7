"""The v1 JSON API: predict, feedback, and the models' descriptions."""

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelloop.service import api_schema as schema
from modelloop.service.body import read_json
from modelloop.service.errors import NotFound, PayloadTooLarge, ServiceError, Unprocessable
from modelloop.service.models import Slot
from modelloop.service.state import Service
from modelloop.store.errors import StoreError
from modelloop.store.predictions import LogRow

JSON = "application/json"


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


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
    ids = body.get("ids")
    if ids is None:
        return instances, None
    if type(ids) is not list or len(ids) != len(instances):
        raise Unprocessable('"ids" must be a list with one id per instance')
    for i, pid in enumerate(ids):
        if type(pid) is not str or not 0 < len(pid) <= 128:
            raise Unprocessable(f"ids[{i}] must be a string of 1 to 128 characters")
    if len(set(ids)) != len(ids):
        raise Unprocessable('"ids" must be unique within a request')
    return instances, ids


def v1_router(service: Service) -> APIRouter:
    router = APIRouter()
    settings = service.settings
    metrics = service.metrics
    requests = metrics.requests
    seconds = metrics.request_seconds

    async def _predict(request: Request, model: str, slot_of: Any, endpoint: str) -> Response:
        start = time.perf_counter()
        code = 500
        version = ""
        try:
            body = await read_json(request)
            instances, ids = _instances(body, settings.max_instances)
            slot: Slot = await slot_of()
            served = slot.served
            version = served.version_label
            columns = served.schema.columns(instances)
            n = len(instances)
            outputs = await slot.batcher.predict(columns, n)
            if ids is None:
                ids = service.ids.take(n)
            now = time.time()
            latency = (time.perf_counter() - start) * 1000.0
            formatted = served.format(outputs)
            name, number = served.name, served.version
            rows: list[LogRow] = [
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
            await service.log.put(rows)
            code = 200
            return json_response(
                {"model": served.name, "version": served.version, "predictions": preds}
            )
        except ServiceError as e:
            code = e.status
            raise
        finally:
            label = metric_model(service, model)
            requests.labels(label, version, endpoint, str(code)).inc()
            seconds.labels(label, endpoint).observe(time.perf_counter() - start)

    @router.post(
        "/v1/models/{model}/predict",
        tags=["predict"],
        summary="Predict with the active version",
        openapi_extra=schema.PREDICT_BODY,
        responses=schema.PREDICT_RESPONSES,
    )
    async def predict(model: str, request: Request) -> Response:
        async def slot() -> Slot:
            return service.models.get(model)

        return await _predict(request, model, slot, "predict")

    @router.post(
        "/v1/models/{model}/versions/{version}/predict",
        tags=["predict"],
        summary="Predict with a given version",
        openapi_extra=schema.PREDICT_BODY,
        responses=schema.PREDICT_RESPONSES,
    )
    async def predict_version(model: str, version: int, request: Request) -> Response:
        async def slot() -> Slot:
            return await service.models.get_version(model, version)

        return await _predict(request, model, slot, "predict_version")

    @router.post(
        "/v1/feedback",
        tags=["feedback"],
        summary="Ground truth for predictions",
        response_model=schema.FeedbackResult,
        responses=schema.ERRORS,
    )
    async def feedback(body: schema.FeedbackRequest) -> schema.FeedbackResult:
        await service.log.written()
        items = [(item.id, item.label) for item in body.items]
        matched, unknown = await asyncio.to_thread(service.predictions.add_feedback, items)
        metrics.feedback_rows.labels("matched").inc(matched)
        metrics.feedback_rows.labels("unknown").inc(len(items) - matched)
        return schema.FeedbackResult(received=len(items), matched=matched, unknown_ids=unknown)

    @router.get("/v1/models", tags=["models"], summary="Every model, its versions and metrics")
    async def list_models() -> Response:
        names = await asyncio.to_thread(service.registry.models)
        out = [await asyncio.to_thread(_describe, service, name, False) for name in names]
        return json_response({"models": out})

    @router.get(
        "/v1/models/{model}",
        tags=["models"],
        responses=schema.ERRORS,
        summary="A model's versions, active version, metrics and input schema",
    )
    async def get_model(model: str) -> Response:
        return json_response(await asyncio.to_thread(_describe, service, model, True))

    return router


def _describe(service: Service, model: str, full: bool) -> dict[str, Any]:
    registry = service.registry
    try:
        versions = registry.versions(model)
    except StoreError as e:
        raise NotFound(str(e)) from None
    if not versions:
        raise NotFound(f"model {model!r} not found")
    active = registry.active(model)
    slot = service.models.active.get(model)
    metas = [registry.metadata(model, v) for v in versions]
    current = next((m for m in metas if m.version == active), metas[-1])
    out: dict[str, Any] = {
        "name": model,
        "active_version": active,
        "serving_version": slot.served.version if slot else None,
        "task": current.task,
        "primary_metric": current.primary_metric,
        "metrics": current.metrics,
        "features": [f.model_dump() for f in current.features],
        "classes": current.classes,
        "versions": [
            {
                "version": m.version,
                "created_at": m.created_at,
                "estimator": m.estimator,
                "trigger": m.trigger,
                "metrics": m.metrics,
                "parent_version": m.parent_version,
            }
            for m in metas
        ],
    }
    if full:
        out["history"] = [h.model_dump() for h in registry.history(model)]
        out["parity"] = current.parity.model_dump()
        out["data"] = current.data.model_dump()
    return out
