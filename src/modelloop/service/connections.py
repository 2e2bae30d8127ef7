"""uvicorn's httptools protocol with two bounds it lacks: how long a request may take to
arrive, and a JSON 503 for the connections opened over the connection limit.

Measured on uvicorn 0.54: a connection that sends nothing, or part of its headers, or part of
its body, is kept open forever (its keep-alive timer runs only between a response and the
next byte, and there is no header or body timeout). Each such connection holds a file
descriptor and, with `limit_concurrency`, a place under the limit. Here each connection notes
when its current request began to arrive (its first byte, or the connection's opening), and a
sweep once a second (or four times per `timeout`, if that is shorter) answers 408 and closes
the connections whose request has not fully arrived within `timeout`: no timer per request
on the hot path (an asyncio timer armed and cancelled per request measured ~4 µs), one pass
over the open connections per sweep.
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelloop.service.headers import NOSNIFF

log = logging.getLogger("modelloop.service")


def _response(status: int, reason: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        "x-content-type-options: nosniff\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    body = orjson.dumps({"error": "too many connections; try again shortly"})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        NOSNIFF,
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TimedProtocol(HttpToolsProtocol):
    """One connection. `arriving_since` is when the request now arriving began to, or None
    between requests (idle keep-alive is uvicorn's own timer's)."""

    timeout = 10.0  # set per server by `protocol_class`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Over the limit, a request is answered by `_busy` (uvicorn's own answer is
        # text/plain, and counts this connection against the limit too).
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None
        self.arriving_since: float | None = None
        self.headers_done = False
        self.begun = False
        self.admitted = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arriving_since = time.monotonic()
        # Admission is decided once, when the connection opens: a flood of new connections
        # is refused, while the clients already connected keep being served (uvicorn checks
        # the count on every request, so an established keep-alive client got 503 too).
        limit = self.max_connections
        self.admitted = limit is None or len(self.connections) <= limit

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.begun = True
        self.headers_done = False
        if self.arriving_since is None:
            self.arriving_since = time.monotonic()

    def on_headers_complete(self) -> None:
        self.headers_done = True
        limit = self.max_connections
        if not self.admitted or (limit is not None and len(self.tasks) >= limit):
            app, self.app = self.app, _busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.arriving_since = None
        self.begun = False

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request that is not HTTP, as JSON and with nosniff like every
        other answer (uvicorn's is text/plain, without the header)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(_response(400, "Bad Request", msg))
        self.transport.close()

    def timed_out(self) -> None:
        """The request has not arrived in time: 408 (unless it was answered already, or
        nothing of it came), and close. The app, if it is waiting for the body, is told the
        client left; what it sends then goes nowhere."""
        self.arriving_since = None
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle if self.headers_done else None
        answered = cycle is not None and cycle.response_started
        if self.begun and not answered:
            self.transport.write(
                _response(
                    408,
                    "Request Timeout",
                    f"the request did not arrive within {self.timeout:g} s",
                )
            )
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def protocol_class(timeout: float) -> type[TimedProtocol]:
    return type("TimedProtocol", (TimedProtocol,), {"timeout": timeout})


def sweep(connections: Iterable[object], timeout: float) -> int:
    """Time out every connection whose request has taken longer than `timeout` to arrive."""
    deadline = time.monotonic() - timeout
    late = [
        c
        for c in connections
        if isinstance(c, TimedProtocol) and c.arriving_since is not None
        if c.arriving_since < deadline
    ]
    for c in late:
        c.timed_out()
    return len(late)


async def sweep_forever(connections: Iterable[object], timeout: float) -> None:
    while True:
        await asyncio.sleep(min(1.0, timeout / 4))
        try:
            late = sweep(list(connections), timeout)
        except Exception:  # keep sweeping whatever one pass hit
            log.exception("connection sweep failed")
            continue
        if late:
            log.info("closed %d connections whose request took over %g s to arrive", late, timeout)
