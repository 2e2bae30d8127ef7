"""The admin API: retrain, jobs, promote, rollback. Bearer token compared in constant time."""

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from modelloop.service import api_schema as schema
from modelloop.service.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from modelloop.service.loading import LoadFailed
from modelloop.service.routes_v1 import json_response
from modelloop.service.state import Service
from modelloop.store.errors import (
    JobNotFound,
    NothingToRollBack,
    StoreError,
    VersionNotFound,
)


def admin_router(service: Service) -> APIRouter:
    token = service.settings.admin_token
    expected = token.get_secret_value().encode() if token is not None else None

    def authorise(request: Request) -> str:
        if not expected:
            raise Forbidden("admin API disabled: set MODELLOOP_ADMIN_TOKEN to enable it")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("admin API needs 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise Unauthorized("admin token is not valid")
        client = request.client.host if request.client else "unknown"
        return f"admin@{client}"

    router = APIRouter(
        prefix="/v1/admin",
        tags=["admin"],
        responses={
            **schema.ERRORS,
            401: {"model": schema.ErrorBody, "description": "no or wrong token"},
            403: {"model": schema.ErrorBody, "description": "admin API disabled"},
        },
    )

    @router.post(
        "/models/{model}/retrain",
        status_code=202,
        response_model=schema.JobOut,
        summary="Queue a retrain job",
    )
    async def retrain(
        model: str, body: schema.RetrainRequest | None = None, actor: str = Depends(authorise)
    ) -> Response:
        service.models.require_known(model)
        reason = body.reason if body else schema.RetrainRequest().reason
        job, created = await asyncio.to_thread(service.jobs.enqueue, model, "admin", reason)
        await asyncio.to_thread(
            service.events.record,
            model,
            "retrain_requested",
            actor,
            {"job": job.id, "reason": reason, "new_job": created},
        )
        return json_response(job.as_dict(), status=202)

    @router.get("/jobs", response_model=schema.JobList, summary="Recent jobs")
    async def jobs(
        model: str | None = None, limit: int = 100, actor: str = Depends(authorise)
    ) -> Response:
        if not 1 <= limit <= 1000:
            raise Unprocessable("limit must be between 1 and 1000")
        found = await asyncio.to_thread(service.jobs.list, model, limit)
        return json_response({"jobs": [j.as_dict() for j in found]})

    @router.get("/jobs/{job_id}", response_model=schema.JobOut, summary="One job")
    async def job(
        job_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)], actor: str = Depends(authorise)
    ) -> Response:
        try:
            found = await asyncio.to_thread(service.jobs.get, job_id)
        except JobNotFound as e:
            raise NotFound(str(e)) from None
        return json_response(found.as_dict())

    @router.post(
        "/models/{model}/promote",
        response_model=schema.SwapResult,
        summary="Load, smoke-test and activate a version",
    )
    async def promote(
        model: str, body: schema.PromoteRequest, actor: str = Depends(authorise)
    ) -> Response:
        service.models.require_known(model)
        if body.version not in service.registry.versions(model):
            raise NotFound(f"model {model!r} has no version {body.version}")
        try:
            served = await service.models.load_checked(model, body.version)
        except LoadFailed as e:
            raise Unprocessable(f"version {body.version} not promoted: {e}") from None
        try:
            entry = await asyncio.to_thread(
                service.registry.promote, model, body.version, actor, body.reason
            )
        except VersionNotFound as e:
            raise NotFound(str(e)) from None
        service.models.install(served)
        await asyncio.to_thread(
            service.events.record, model, "promote", actor, entry.model_dump(mode="json")
        )
        return json_response(
            {
                "model": model,
                "from_version": entry.from_version,
                "to_version": entry.to_version,
                "serving_version": served.version,
            }
        )

    @router.post(
        "/models/{model}/rollback",
        response_model=schema.SwapResult,
        summary="Return to the previously active version",
    )
    async def rollback(
        model: str, body: schema.RollbackRequest | None = None, actor: str = Depends(authorise)
    ) -> Response:
        service.models.require_known(model)
        reason = body.reason if body else schema.RollbackRequest().reason
        target = service.registry.rollback_target(model)
        if target is None:
            raise Unprocessable(str(NothingToRollBack(model)))
        try:
            served = await service.models.load_checked(model, target)
        except LoadFailed as e:
            raise Unprocessable(f"cannot roll back to version {target}: {e}") from None
        try:
            entry = await asyncio.to_thread(service.registry.rollback, model, actor, reason)
        except StoreError as e:
            raise Unprocessable(str(e)) from None
        if entry.to_version == served.version:
            service.models.install(served)
        else:  # someone moved the pointer meanwhile; the poller will catch up
            await service.models.refresh()
        await asyncio.to_thread(
            service.events.record, model, "rollback", actor, entry.model_dump(mode="json")
        )
        slot = service.models.active.get(model)
        return json_response(
            {
                "model": model,
                "from_version": entry.from_version,
                "to_version": entry.to_version,
                "serving_version": slot.served.version if slot else None,
            }
        )

    return router
