"""The v1 JSON API: predict, feedback, and the models' descriptions."""

import asyncio
from collections.abc import Mapping
from pathlib import PurePath, PureWindowsPath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from modelloop.redact import actor_name, scrub
from modelloop.service import api_schema as schema
from modelloop.service.auth import bearer_matches, bearer_scheme, check_bearer, expected_token
from modelloop.service.errors import NotFound
from modelloop.service.feedback import LabelRules, check_items
from modelloop.service.predict import Predictor
from modelloop.service.state import Service
from modelloop.store.errors import StoreError

JSON = "application/json"


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON, headers=headers)


def v1_router(service: Service, predictor: Predictor) -> APIRouter:
    router = APIRouter()
    metrics = service.metrics

    predict_body = schema.predict_body(service.settings.max_instances)
    predict_responses = schema.responses(
        400,
        404,
        413,
        415,
        422,
        503,
        body=schema.PredictResponse,
        text="one prediction per instance",
    )

    @router.post(
        "/v1/models/{model}/predict",
        tags=["predict"],
        summary="Predict with the active version",
        openapi_extra=predict_body,
        responses=predict_responses,
    )
    async def predict(model: schema.ModelName, request: Request) -> Response:
        reply = await predictor.v1(model, None, await request.body())
        return Response(reply.body, media_type=reply.media_type)

    @router.post(
        "/v1/models/{model}/versions/{version}/predict",
        tags=["predict"],
        summary="Predict with a given version",
        openapi_extra=predict_body,
        responses=predict_responses,
    )
    async def predict_version(
        model: schema.ModelName, version: schema.Version, request: Request
    ) -> Response:
        reply = await predictor.v1(model, str(version), await request.body())
        return Response(reply.body, media_type=reply.media_type)

    # Feedback: open unless MODELLOOP_FEEDBACK_TOKEN is set (then the scheme is in OpenAPI).
    feedback_token = expected_token(service.settings.feedback_token)
    feedback_bearer = bearer_scheme(
        "feedbackToken", "MODELLOOP_FEEDBACK_TOKEN, as 'Authorization: Bearer <token>'"
    )

    def feedback_auth(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(feedback_bearer)],
    ) -> None:
        if feedback_token is not None:
            check_bearer(credentials, feedback_token, "feedback")

    labels = LabelRules(service.registry, service.models)

    @router.post(
        "/v1/feedback",
        tags=["feedback"],
        summary="Ground truth for predictions",
        response_model=schema.FeedbackResult,
        responses=schema.responses(
            *((401,) if feedback_token else ()),
            400,
            413,
            415,
            422,
            503,
            body=schema.FeedbackResult,
        ),
        dependencies=[Depends(feedback_auth)] if feedback_token else [],
    )
    async def feedback(body: schema.FeedbackRequest) -> schema.FeedbackResult:
        items = [(item.id, item.label) for item in body.items]
        check_items(items)
        await service.log.written()
        matched, unknown = await asyncio.to_thread(
            service.predictions.add_feedback, items, labels.check
        )
        metrics.feedback_rows.labels("matched").inc(matched)
        metrics.feedback_rows.labels("unknown").inc(len(items) - matched)
        return schema.FeedbackResult(received=len(items), matched=matched, unknown_ids=unknown)

    @router.get(
        "/v1/models",
        tags=["models"],
        summary="Every model, its versions and metrics",
        responses=schema.responses(body=schema.ModelList),
    )
    async def list_models() -> Response:
        names = await asyncio.to_thread(service.registry.models)
        out = [await asyncio.to_thread(_describe, service, name, False) for name in names]
        return json_response({"models": out})

    admin = expected_token(service.settings.admin_token)

    @router.get(
        "/v1/models/{model}",
        tags=["models"],
        responses=schema.responses(404, body=schema.ModelDescription),
        summary="A model's versions, active version, metrics and input schema",
        description="Without `Authorization: Bearer $MODELLOOP_ADMIN_TOKEN` (or with a wrong "
        "one) the history and training data are redacted: file paths become base names and "
        "actors lose their host or address (`admin@10.0.0.7` is `admin`).",
    )
    async def get_model(model: schema.ModelName, request: Request) -> Response:
        out = await asyncio.to_thread(_describe, service, model, True)
        if not bearer_matches(request.headers.get("authorization"), admin):
            out = redacted(out)
        return json_response(out, headers={"Vary": "Authorization"})

    return router


def redacted(description: dict[str, Any]) -> dict[str, Any]:
    """The full description as callers without the admin token see it."""
    out = dict(description)
    if (history := out.get("history")) is not None:
        out["history"] = [
            {**h, "actor": actor_name(h["actor"]), "reason": scrub(h["reason"])} for h in history
        ]
    if (data := out.get("data")) is not None:
        data = dict(data)
        path = data.get("path")
        if path:
            base = PurePath(path).name or PureWindowsPath(path).name
            data["path"] = base
            data["source"] = data["source"].replace(path, base)
        data["source"] = scrub(data["source"])
        out["data"] = data
    return out


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
