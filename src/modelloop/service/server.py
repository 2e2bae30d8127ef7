"""Run the service under uvicorn (uvloop + httptools), one process; SIGTERM drains it."""

import asyncio
import contextlib
import logging
import signal
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from modelloop.service.app import create_app
from modelloop.service.cache import ModelCache
from modelloop.service.connections import protocol_class, sweep_forever
from modelloop.service.settings import ServiceSettings
from modelloop.service.state import Service
from modelloop.store.errors import RegistryUnavailable
from modelloop.store.registry import open_registry


class DrainingServer(uvicorn.Server):
    """On SIGTERM or SIGINT, readiness goes false at once; uvicorn then stops accepting,
    lets in-flight requests finish, and the app's lifespan flushes the prediction log."""

    def __init__(self, config: uvicorn.Config, service: Service, body_timeout: float) -> None:
        super().__init__(config)
        self.service = service
        self.body_timeout = body_timeout
        self._sweeper: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._sweeper = asyncio.create_task(
            sweep_forever(self.server_state.connections, self.body_timeout)
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Keeps sweeping while uvicorn waits for connections to close: a request that never
        # finishes arriving does not hold the stop up for the graceful timeout.
        try:
            await super().shutdown(sockets)
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweeper

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.draining = True
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            # uvicorn (>= 0.29) raises captured signals again once it has shut down, so a
            # fully drained stop would end by SIGTERM (status 143). SIGTERM is how a
            # supervisor asks for the graceful stop we have just done: exit 0.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                while sig in captured:
                    captured.remove(sig)


def build(settings: ServiceSettings) -> tuple[FastAPI, DrainingServer]:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol_class(settings.body_timeout_seconds),
        limit_concurrency=settings.max_connections,
        lifespan="on",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=30,
        timeout_keep_alive=30,
    )
    return app, DrainingServer(config, app.state.service, settings.body_timeout_seconds)


def reachable_or_cached(settings: ServiceSettings) -> str | None:
    """None if the service can start: the registry answers, or the local cache holds what
    served last. Else the one-line reason (no bucket, refused credentials, store down)."""
    registry = open_registry(settings.registry_location)
    if registry.remote and ModelCache(settings.home / "cache").last_active():
        return None  # the first load waits for the store a few seconds, then uses the cache
    try:
        registry.check()
    except RegistryUnavailable as e:
        return str(e)
    return None


def serve(settings: ServiceSettings) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        problem = reachable_or_cached(settings)
    except RegistryUnavailable as e:  # a malformed s3:// URL
        problem = str(e)
    if problem is not None:
        logging.getLogger("modelloop.service").error("cannot start: %s", problem)
        return 2
    _, server = build(settings)
    server.run()
    return 0
