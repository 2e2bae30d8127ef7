"""The RPCs of `inference.GRPCInferenceService`, on the service and predictor REST uses.

Handlers take and return bytes: a message that does not parse is the caller's mistake
(INVALID_ARGUMENT), where grpcio's own deserializer would answer INTERNAL; and the request's
byte length, which the log queue's memory bound counts, comes for free.
"""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

import modelloop
from modelloop.service import oip
from modelloop.service.errors import NotFound
from modelloop.service.grpc import grpc_predict_v2_pb2 as pb
from modelloop.service.grpc import tensors
from modelloop.service.grpc.status import failure
from modelloop.service.predict import Predictor
from modelloop.service.state import Service

SERVICE = "inference.GRPCInferenceService"
ENDPOINT = "grpc_infer"  # the `endpoint` label of ModelInfer in the request metrics

Req = TypeVar("Req", bound=Message)
if TYPE_CHECKING:  # generic in the stubs only
    Context = grpc.aio.ServicerContext[bytes, bytes]
    Handler = grpc.RpcMethodHandler[bytes, bytes]


class Inference:
    def __init__(self, service: Service, predictor: Predictor) -> None:
        self.service = service
        self.predictor = predictor

    async def server_live(self, _: pb.ServerLiveRequest, size: int) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, _: pb.ServerReadyRequest, size: int) -> pb.ServerReadyResponse:
        s = self.service
        return pb.ServerReadyResponse(ready=s.started and not s.draining and s.log.healthy)

    async def server_metadata(
        self, _: pb.ServerMetadataRequest, size: int
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="modelloop", version=modelloop.__version__, extensions=["binary_tensor_data"]
        )

    async def model_ready(self, req: pb.ModelReadyRequest, size: int) -> pb.ModelReadyResponse:
        """Not ready (rather than NOT_FOUND) for a model or version we do not serve: stock
        clients ask `is_model_ready` to learn whether they may send, as over HTTP."""
        try:
            await self.predictor.slot(req.name, req.version or None)
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=not self.service.draining)

    async def model_metadata(
        self, req: pb.ModelMetadataRequest, size: int
    ) -> pb.ModelMetadataResponse:
        slot = await self.predictor.slot(req.name, req.version or None)
        versions = self.service.models.versions_of(req.name)
        return tensors.metadata(oip.model_metadata(slot.served, versions))

    async def model_infer(self, req: pb.ModelInferRequest, size: int) -> pb.ModelInferResponse:
        done = await self.predictor.infer_request(
            req.model_name, req.model_version or None, lambda: tensors.decode(req), size, ENDPOINT
        )
        return tensors.encode(done)


def _unary(
    name: str, request_type: type[Req], handle: Callable[[Req, int], Awaitable[Message]]
) -> "Handler":
    async def call(raw: bytes, context: "Context") -> bytes:
        try:
            request = request_type.FromString(raw)
        except DecodeError as e:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{name}: the request does not parse: {e}"
            )
        try:
            reply = await handle(request, len(raw))
        except Exception as e:
            code, message, trailers = failure(e, name)
            await context.abort(code, message, trailers)
        return reply.SerializeToString()

    return grpc.unary_unary_rpc_method_handler(call)


def handler(service: Service, predictor: Predictor) -> grpc.GenericRpcHandler:
    rpc = Inference(service, predictor)
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": _unary("ServerLive", pb.ServerLiveRequest, rpc.server_live),
            "ServerReady": _unary("ServerReady", pb.ServerReadyRequest, rpc.server_ready),
            "ServerMetadata": _unary(
                "ServerMetadata", pb.ServerMetadataRequest, rpc.server_metadata
            ),
            "ModelReady": _unary("ModelReady", pb.ModelReadyRequest, rpc.model_ready),
            "ModelMetadata": _unary("ModelMetadata", pb.ModelMetadataRequest, rpc.model_metadata),
            "ModelInfer": _unary("ModelInfer", pb.ModelInferRequest, rpc.model_infer),
        },
    )
