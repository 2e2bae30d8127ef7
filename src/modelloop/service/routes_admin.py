"""The admin API: retrain, jobs, promote, rollback. Bearer token compared in constant time."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from modelloop.service import api_schema as schema
from modelloop.service.auth import bearer_scheme, check_bearer, expected_token
from modelloop.service.errors import Conflict, Forbidden, NotFound, Unprocessable
from modelloop.service.loading import LoadFailed
from modelloop.service.routes_v1 import json_response
from modelloop.service.state import Service
from modelloop.store.errors import (
    JobNotFound,
    NothingToRollBack,
    RegistryUnavailable,
    StoreError,
    VersionNotFound,
)


def admin_router(service: Service) -> APIRouter:
    expected = expected_token(service.settings.admin_token)

    # Documents the scheme in OpenAPI; `authorise` gives the answers (403 when admin is off).
    bearer = bearer_scheme(
        "adminToken", "MODELLOOP_ADMIN_TOKEN, as 'Authorization: Bearer <token>'"
    )

    def authorise(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> str:
        if not expected:
            raise Forbidden("admin API disabled: set MODELLOOP_ADMIN_TOKEN to enable it")
        check_bearer(credentials, expected, "admin")
        client = request.client.host if request.client else "unknown"
        return f"admin@{client}"

    router = APIRouter(prefix="/v1/admin", tags=["admin"])
    # Every admin route: 401/403 from `authorise`, 503 when the database is away.
    guarded = (401, 403, 503)

    @router.post(
        "/models/{model}/retrain",
        status_code=202,
        summary="Queue a retrain job",
        responses=schema.responses(
            *guarded,
            400,
            404,
            413,
            415,
            422,
            ok=202,
            body=schema.JobOut,
            text="the job (new or queued)",
        ),
    )
    async def retrain(
        model: schema.ModelName,
        body: schema.RetrainRequest | None = None,
        actor: str = Depends(authorise),
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

    @router.get(
        "/jobs",
        summary="Recent jobs",
        responses=schema.responses(*guarded, 422, body=schema.JobList),
    )
    async def jobs(
        model: Annotated[str | None, Query(description="only this model's jobs")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="newest first")] = 100,
        actor: str = Depends(authorise),
    ) -> Response:
        found = await asyncio.to_thread(service.jobs.list, model, limit)
        return json_response({"jobs": [j.as_dict() for j in found]})

    @router.get(
        "/jobs/{job_id}",
        summary="One job",
        responses=schema.responses(*guarded, 404, 422, body=schema.JobOut),
    )
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
        summary="Load, smoke-test and activate a version",
        responses=schema.responses(*guarded, 400, 404, 413, 415, 422, body=schema.SwapResult),
    )
    async def promote(
        model: schema.ModelName, body: schema.PromoteRequest, actor: str = Depends(authorise)
    ) -> Response:
        service.models.require_known(model)
        if body.version not in service.registry.versions(model):
            raise NotFound(f"model {model!r} has no version {body.version}")
        try:
            served = await service.models.load_checked(model, body.version)
        except LoadFailed as e:
            raise Unprocessable(f"version {body.version} not promoted: {e}") from None
        try:
            entry = await service.models.commit(
                served,
                lambda: service.registry.promote(model, body.version, actor, body.reason),
            )
        except VersionNotFound as e:
            raise NotFound(str(e)) from None
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
        summary="Return to the previously active version",
        responses=schema.responses(*guarded, 400, 404, 409, 413, 415, 422, body=schema.SwapResult),
    )
    async def rollback(
        model: schema.ModelName,
        body: schema.RollbackRequest | None = None,
        actor: str = Depends(authorise),
    ) -> Response:
        service.models.require_known(model)
        reason = body.reason if body else schema.RollbackRequest().reason
        target = service.registry.rollback_target(model)
        if target is None:
            raise Conflict(str(NothingToRollBack(model)))
        try:
            served = await service.models.load_checked(model, target)
        except LoadFailed as e:
            raise Unprocessable(f"cannot roll back to version {target}: {e}") from None
        try:
            entry = await service.models.commit(
                served, lambda: service.registry.rollback(model, actor, reason)
            )
        except RegistryUnavailable:
            raise
        except StoreError as e:  # the history moved meanwhile
            raise Conflict(str(e)) from None
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
