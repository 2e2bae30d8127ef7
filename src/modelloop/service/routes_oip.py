"""Open Inference Protocol v2 routes, so stock clients (tritonclient, KServe) work unchanged."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

import modelloop
from modelloop.service import api_schema as schema
from modelloop.service import oip
from modelloop.service.errors import (
    NotFound,
    Unavailable,
)
from modelloop.service.models import Slot
from modelloop.service.predict import Predictor
from modelloop.service.routes_v1 import json_response
from modelloop.service.state import Service
from modelloop.service.versions import parse_version, shown


def oip_router(service: Service, predictor: Predictor) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["open inference protocol"])

    @router.get(
        "", summary="Server metadata", responses=schema.responses(body=schema.ServerMetadata)
    )
    async def server_metadata() -> Response:
        return json_response(
            {
                "name": "modelloop",
                "version": modelloop.__version__,
                "extensions": ["binary_tensor_data"],
            }
        )

    @router.get("/health/live", summary="Liveness", responses=schema.responses(body=schema.Live))
    async def live() -> Response:
        return json_response({"live": True})

    @router.get(
        "/health/ready",
        summary="Readiness: models loaded, not draining, and the prediction log is written",
        responses={
            200: {"model": schema.Ready, "description": "ready"},
            503: {
                "model": schema.Ready,
                "description": "starting, draining, or the prediction log cannot be written "
                "(neither the database nor the local spool takes rows)",
            },
        },
    )
    async def ready() -> Response:
        if not service.started:
            return json_response({"ready": False, "reason": "starting"}, 503)
        if service.draining:
            return json_response({"ready": False, "reason": "draining"}, 503)
        if not service.log.healthy:
            return json_response({"ready": False, "reason": service.log.reason}, 503)
        return json_response({"ready": True})

    def slot_for(model: str) -> Slot:
        return service.models.get(model)

    async def slot_for_version(model: str, version: str) -> Slot:
        number = parse_version(version)
        if number is None:
            raise NotFound(f"model {model!r} has no version {shown(version)}")
        return await service.models.get_version(model, number)

    metadata_responses = schema.responses(404, 503, body=schema.ModelMetadata)
    ready_responses = schema.responses(404, 503, body=schema.ModelReady)

    @router.get("/models/{model}", summary="Model metadata", responses=metadata_responses)
    async def model_metadata(model: schema.ModelName) -> Response:
        slot = slot_for(model)
        return json_response(oip.model_metadata(slot.served, service.models.versions_of(model)))

    @router.get(
        "/models/{model}/versions/{version}",
        summary="Model version metadata",
        responses=metadata_responses,
    )
    async def version_metadata(model: schema.ModelName, version: schema.OipVersion) -> Response:
        slot = await slot_for_version(model, version)
        return json_response(oip.model_metadata(slot.served, service.models.versions_of(model)))

    @router.get("/models/{model}/ready", summary="Model readiness", responses=ready_responses)
    async def model_ready(model: schema.ModelName) -> Response:
        slot_for(model)
        if service.draining:
            raise Unavailable("draining")
        return json_response({"name": model, "ready": True})

    @router.get(
        "/models/{model}/versions/{version}/ready",
        summary="Model version readiness",
        responses=ready_responses,
    )
    async def version_ready(model: schema.ModelName, version: schema.OipVersion) -> Response:
        await slot_for_version(model, version)
        return json_response({"name": model, "ready": True})

    async def infer(request: Request, model: str, version: str | None) -> Response:
        reply = await predictor.infer(
            model, version, await request.body(), request.headers.get(oip.HEADER_LENGTH)
        )
        return Response(reply.body, media_type=reply.media_type, headers=reply.headers)

    @router.post(
        "/models/{model}/infer",
        summary="Inference (JSON or binary tensors)",
        openapi_extra=schema.INFER_BODY,
        responses=schema.INFER_RESPONSES,
    )
    async def infer_active(model: schema.ModelName, request: Request) -> Response:
        return await infer(request, model, None)

    @router.post(
        "/models/{model}/versions/{version}/infer",
        summary="Inference on a version",
        openapi_extra=schema.INFER_BODY,
        responses=schema.INFER_RESPONSES,
    )
    async def infer_version(
        model: schema.ModelName, version: schema.OipVersion, request: Request
    ) -> Response:
        return await infer(request, model, version)

    return router
