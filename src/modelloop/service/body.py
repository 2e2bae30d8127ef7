"""Reading request bodies: a declared type and a size limit before anything is read, and JSON
parsed with orjson."""

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelloop.service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


class BodyLimit:
    """For the routes behind the fast path: answer 415 to a body that is not declared JSON
    (`check_content_type`), and 413 to bodies over `limit` bytes, by Content-Length up front
    or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = ctype = None
        chunked = browser = header_length = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"content-type":
                ctype = value.decode("latin-1")
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"origin" or key == b"sec-fetch-mode":
                browser = True
            elif key == b"inference-header-content-length":
                header_length = True
        path = scope["path"]
        try:
            check_content_type(
                ctype,
                has_body=has_body(length, chunked),
                infer=path.startswith("/v2/") and path.endswith("/infer"),
                header_length=header_length,
                browser=browser,
            )
        except UnsupportedMediaType as e:
            await _error(send, 415, e.message)
            return
        if length is not None:
            if len(length) > 19 or not length.isdigit() or int(length) > self.limit:
                await _too_large(send, self.limit)
                return
            await self.app(scope, receive, send)
            return
        seen = 0
        too_large = False
        replied = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise PayloadTooLarge(f"request body is larger than {self.limit} bytes")
            return message

        async def guarded(message: Message) -> None:
            # Whatever the route made of the interrupted body (FastAPI turns errors while it
            # parses a body into a 400), the answer to an oversized body is our 413.
            nonlocal replied
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start" and not replied:
                replied = True
                await _too_large(send, self.limit)

        try:
            await self.app(scope, limited, guarded)
        except PayloadTooLarge:
            if replied:
                raise
            replied = True
            await _too_large(send, self.limit)


async def _too_large(send: Send, limit: int) -> None:
    await _error(send, 413, f"request body is larger than the limit of {limit} bytes", close=True)


async def _error(send: Send, status: int, message: str, close: bool = False) -> None:
    body = orjson.dumps({"error": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def ascii_digits(text: str) -> bool:
    """Whether `text` is a non-negative integer in ASCII digits (`str.isdigit` also takes
    '²' or '٣', which `int` refuses or reads as another number)."""
    return text.isascii() and text.isdigit()


def check_content_type(
    ctype: str | None,
    *,
    has_body: bool,
    infer: bool = False,
    header_length: bool = False,
    browser: bool = False,
) -> None:
    """A body must say it is JSON (`application/json` or `*/*+json`), or, on OIP infer,
    binary tensors (`application/octet-stream` with Inference-Header-Content-Length); else 415.

    A browser posts `text/plain` (or a form) cross-site without a CORS preflight, so a body
    of another type, or of none, could be a page's doing. Stock tritonclient sends infer
    bodies with no content type at all: accepted on infer only from a client that is not a
    browser, i.e. sends neither `Origin` nor `Sec-Fetch-Mode` (browsers add them to every
    cross-origin POST). No body, nothing to smuggle: any type, or none, is fine."""
    if not has_body:
        return
    if ctype is None:
        if infer and not browser:
            return
        raise UnsupportedMediaType("a request body needs a content type; send application/json")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return
    if infer and header_length and media == "application/octet-stream":
        return
    raise UnsupportedMediaType(
        f"content type {media[:100]!r} is not supported; send application/json"
        + (" (or application/octet-stream with Inference-Header-Content-Length)" if infer else "")
    )


def has_body(length: bytes | None, chunked: bool) -> bool:
    """Whether a request has a body, from its Content-Length and Transfer-Encoding."""
    return chunked or (length is not None and length.strip(b"0") != b"")


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise BadRequest("request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        hint = ""
        if b"NaN" in raw or b"Infinity" in raw:
            hint = " (NaN and Infinity are not JSON; send null for a missing value)"
        raise BadRequest(f"request body is not valid JSON: {e}{hint}") from None
