"""Reading request bodies: a size limit before anything is read, and JSON parsed with orjson."""

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelloop.service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


class BodyLimit:
    """Answer 413 to bodies over `limit` bytes: by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
                break
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
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
    body = orjson.dumps({"error": f"request body is larger than the limit of {limit} bytes"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def ascii_digits(text: str) -> bool:
    """Whether `text` is a non-negative integer in ASCII digits (`str.isdigit` also takes
    '²' or '٣', which `int` refuses or reads as another number)."""
    return text.isascii() and text.isdigit()


def check_content_type(ctype: str | None) -> None:
    """JSON bodies may come with no content type or a JSON one; anything else is a 415."""
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {media!r} is not supported; send application/json"
        )


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
