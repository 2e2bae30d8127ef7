"""`create_app(settings)`: wires the registry, database, models, log writer and routes."""

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

import modelloop
from modelloop.service.body import BodyLimit
from modelloop.service.errors import ServiceError, retry_after_header
from modelloop.service.fastpath import FastPath, ServiceApp
from modelloop.service.headers import SecurityHeaders
from modelloop.service.logwriter import LogWriter
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.model_openapi import ModelOpenApi
from modelloop.service.models import ModelManager
from modelloop.service.predict import Predictor
from modelloop.service.retention import ServiceRetention
from modelloop.service.routes_admin import admin_router
from modelloop.service.routes_docs import docs_router
from modelloop.service.routes_oip import oip_router
from modelloop.service.routes_reports import reports_router
from modelloop.service.routes_v1 import json_response, v1_router
from modelloop.service.settings import ServiceSettings
from modelloop.service.spool import Spool
from modelloop.service.state import Service
from modelloop.store.database import Database
from modelloop.store.errors import RegistryUnavailable
from modelloop.store.events import Events
from modelloop.store.jobs import JobQueue
from modelloop.store.log import PredictionLog
from modelloop.store.registry import open_registry

log = logging.getLogger("modelloop.service")

RETRY_AFTER = 2.0  # seconds a caller is asked to wait after a database error


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "request is not valid"


def _openapi(app: FastAPI, typed: ModelOpenApi, service: Service) -> dict[str, Any]:
    """FastAPI's schema with a typed predict operation per served model (model_openapi.py),
    rebuilt when what serves changes."""
    served = [slot.served.metadata for slot in list(service.models.active.values())]
    return typed.schema(_routes_openapi(app), served)


def _routes_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, less the 422 it adds by itself to every route with parameters: its
    body shape (`HTTPValidationError`) is not ours, and the routes whose requests can fail
    validation declare their 422 with our `{"error": ...}` body."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        fastapis = "#/components/schemas/HTTPValidationError"
        for path in schema["paths"].values():
            for operation in path.values():
                unprocessable = operation.get("responses", {}).get("422", {})
                body = unprocessable.get("content", {}).get("application/json", {})
                if body.get("schema", {}).get("$ref") == fastapis:
                    del operation["responses"]["422"]
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(
    settings: ServiceSettings, metrics_registry: CollectorRegistry | None = None
) -> FastAPI:
    metrics = ServiceMetrics(metrics_registry or CollectorRegistry())
    registry = open_registry(settings.registry_location)
    db = Database(settings.database)
    predictions = PredictionLog(db)
    service = Service(
        settings=settings,
        registry=registry,
        db=db,
        metrics=metrics,
        models=ModelManager(registry, settings, metrics),
        log=LogWriter(
            predictions,
            metrics,
            Spool(settings.home / "spool"),
            capacity_rows=settings.log_queue_rows,
            capacity_bytes=settings.log_queue_bytes,
            batch_rows=settings.log_batch_rows,
            flush_seconds=settings.log_flush_seconds,
            wait_seconds=settings.log_wait_seconds,
            drain_seconds=settings.log_drain_seconds,
        ),
        predictions=predictions,
        jobs=JobQueue(db),
        events=Events(db),
    )

    retention = ServiceRetention(db, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        await asyncio.to_thread(db.migrate)
        await service.models.start()
        service.log.start()
        watcher = asyncio.create_task(service.models.watch())
        grpc_server = None
        if settings.grpc_port:
            # Imported only when on: grpcio stays out of a process that serves HTTP only.
            from modelloop.service.grpc.server import GrpcServer

            grpc_server = GrpcServer(service, predictor)
            try:
                await grpc_server.start()
            except BaseException:  # e.g. its port is taken: stop what started, then fail
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                await service.log.drain()
                db.dispose()
                raise
            service.on_drain.append(grpc_server.stop)
        retention.start()
        service.started = True
        # Everything loaded so far lives as long as the process: keep the collector from
        # walking it again on every full collection (those walks were the p99 outliers).
        gc.collect()
        gc.freeze()
        log.info(
            "serving %s from %s",
            sorted(service.models.active) or "no models yet",
            registry.location,
        )
        try:
            yield
        finally:
            service.draining = True
            if grpc_server is not None:
                await grpc_server.stop()  # done already under uvicorn; not under a TestClient
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await retention.stop()
            await service.log.drain()
            db.dispose()

    app = ServiceApp(
        title="modelloop",
        version=modelloop.__version__,
        lifespan=lifespan,
        description="Predictions from ONNX models, with feedback, drift and retraining.",
        # Served by routes_docs.py, off the event loop.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.retention = retention

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> Response:
        return json_response({"error": exc.message}, exc.status, exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def database_down(request: Request, exc: SQLAlchemyError) -> Response:
        # The driver's text may name the host, the user, the query: it stays in our log.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("database error on %s %s: %s", request.method, request.url.path, first)
        return json_response(
            {"error": "database unavailable, try again"}, 503, retry_after_header(RETRY_AFTER)
        )

    @app.exception_handler(RegistryUnavailable)
    async def registry_down(_: Request, exc: RegistryUnavailable) -> Response:
        log.warning("%s", exc)
        return json_response({"error": f"registry unavailable, try again: {exc}"}, 503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        return json_response({"error": _validation_message(exc)}, 422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        # Starlette answers this outside the middleware (so the header is set here), then
        # re-raises for the server to log.
        return json_response(
            {"error": "internal error"}, 500, {"X-Content-Type-Options": "nosniff"}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        text = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and text == "Not Found":
            text = "no such endpoint"
        # Keep the exception's headers: a 405 carries `Allow` (RFC 9110).
        return json_response({"error": text}, exc.status_code, exc.headers)

    predictor = Predictor(service)
    app.include_router(v1_router(service, predictor))
    app.include_router(oip_router(service, predictor))
    app.include_router(admin_router(service))
    app.include_router(reports_router(service))

    typed = ModelOpenApi(registry)
    app.openapi = lambda: _openapi(app, typed, service)  # type: ignore[method-assign]
    app.include_router(docs_router(app.openapi, app.title))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        metrics.log_queue_rows.set(service.log.depth)
        metrics.log_queue_bytes.set(service.log.queue_bytes)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # The fast path sets the header itself: no per-request wrapper on predict.
    app.add_middleware(SecurityHeaders)
    app.fast_path = FastPath(predictor, settings.max_body_bytes)
    return app
