"""A pure-ASGI fast path for the four prediction routes.

FastAPI's routing, request and response objects cost more than the model does for one row, so
`POST /v1/models/{m}[/versions/{v}]/predict` and `POST /v2/models/{m}[/versions/{v}]/infer` are
answered here, by the same `Predictor` the FastAPI routes call, before FastAPI's own layers
(its telemetry check, the error and body-limit middleware: ~10 % of a 1-row request). Everything
else (and any path this does not recognise exactly) goes on to the FastAPI app, which also
documents these routes.
"""

import logging

import orjson
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from modelloop.service.body import check_content_type, has_body
from modelloop.service.errors import PayloadTooLarge, ServiceError
from modelloop.service.headers import NOSNIFF
from modelloop.service.predict import Predictor, Reply

log = logging.getLogger("modelloop.service")


class ClientGone(Exception):
    """The client left (or was timed out, see connections.py) before its body arrived."""


def match(path: str) -> tuple[str, str, str | None] | None:
    """(kind, model, version) for a prediction route, else None."""
    parts = path.split("/")
    n = len(parts)
    if n not in (5, 7) or parts[0] != "" or parts[2] != "models":
        return None
    api, last = parts[1], parts[-1]
    if (api, last) == ("v1", "predict"):
        kind = "predict"
    elif (api, last) == ("v2", "infer"):
        kind = "infer"
    else:
        return None
    if n == 5:
        return kind, parts[3], None
    if parts[4] != "versions":
        return None
    return kind, parts[3], parts[5]


class ServiceApp(FastAPI):
    """The service's FastAPI app, whose prediction routes `fast_path` answers first."""

    fast_path: "FastPath | None" = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and scope["method"] == "POST":
            route = match(scope["path"])
            if route is not None:
                await fast(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class FastPath:
    def __init__(self, predictor: Predictor, limit: int) -> None:
        self.predictor = predictor
        self.limit = limit

    async def __call__(
        self, route: tuple[str, str, str | None], scope: Scope, receive: Receive, send: Send
    ) -> None:
        kind, model, version = route
        ctype = header_length = length = None
        chunked = browser = False
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value.decode("latin-1")
            elif key == b"content-length":
                length = value
            elif key == b"inference-header-content-length":
                header_length = value.decode("latin-1")
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"origin" or key == b"sec-fetch-mode":
                browser = True
        try:
            if length is not None and (
                len(length) > 19 or not length.isdigit() or int(length) > self.limit
            ):
                raise PayloadTooLarge(
                    f"request body is larger than the limit of {self.limit} bytes"
                )
            check_content_type(
                ctype,
                has_body=has_body(length, chunked),
                infer=kind == "infer",
                header_length=header_length is not None,
                browser=browser,
            )
            body = await self._body(receive)
            if kind == "predict":
                reply = await self.predictor.v1(model, version, body)
            else:
                reply = await self.predictor.infer(model, version, body, header_length)
            status = 200
        except ClientGone:
            return  # nobody to answer
        except ServiceError as e:
            status, reply = (
                e.status,
                Reply(orjson.dumps({"error": e.message}), headers=dict(e.headers)),
            )
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, reply = 500, Reply(orjson.dumps({"error": "internal error"}))
        headers = [
            (b"content-type", reply.media_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
            NOSNIFF,
            *((k.encode(), v.encode()) for k, v in reply.headers.items()),
        ]
        if status == 413:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge(
                    f"request body is larger than the limit of {self.limit} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
