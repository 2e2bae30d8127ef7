"""The gRPC server in the service's process: started by the app's lifespan on its event loop,
stopped first on SIGTERM (no new calls, in-flight calls finish) and before the log drain."""

import asyncio
import logging

import grpc

from modelloop.service.grpc.servicer import handler
from modelloop.service.predict import Predictor
from modelloop.service.state import Service

log = logging.getLogger("modelloop.service.grpc")

GRACE_SECONDS = 30.0  # as uvicorn's graceful shutdown for HTTP


class GrpcUnavailable(RuntimeError):
    """The gRPC port could not be bound."""


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    def __init__(self, service: Service, predictor: Predictor) -> None:
        self.service = service
        self.predictor = predictor
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen on the configured host and gRPC port; the port bound."""
        settings = self.service.settings
        server = grpc.aio.server(
            options=[
                # Same limit as an HTTP body; gRPC answers RESOURCE_EXHAUSTED past it.
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", max(settings.max_body_bytes, 4 << 20)),
                # A port another process holds is an error, as for HTTP, not a shared port.
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=settings.max_connections,
        )
        server.add_generic_rpc_handlers((handler(self.service, self.predictor),))
        where = address(settings.host, settings.grpc_port)
        try:
            port = server.add_insecure_port(where)
        except RuntimeError as e:
            await server.stop(None)  # release its core objects now, not in some later GC
            raise GrpcUnavailable(f"cannot listen for gRPC on {where}: {e}") from None
        if port == 0:
            await server.stop(None)
            raise GrpcUnavailable(f"cannot listen for gRPC on {where}")
        await server.start()
        self._server = server
        log.info("gRPC (inference.GRPCInferenceService) on %s", address(settings.host, port))
        return port

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish (up to GRACE_SECONDS). Every caller
        waits for the same stop, so calling it twice is safe."""
        if self._server is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._server.stop(GRACE_SECONDS))
        await asyncio.shield(self._stopping)
