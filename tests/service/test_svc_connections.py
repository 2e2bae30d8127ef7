"""A real `modelloop serve` and raw sockets: requests that arrive too slowly, and too many
connections. (uvicorn alone kept a connection that sent 1 byte of a 100-byte body for as
long as the client liked, and one that sent half its headers too.)"""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import MODEL, ServerProcess, copy_home, row, running_server

TIMEOUT = 2.0
SLACK = 2.0  # the sweep runs every half second here; the rest is a loaded machine's


@pytest.fixture(scope="module")
def server(
    template_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = copy_home(template_home, tmp_path_factory.mktemp("connections-home"))
    with running_server(home, {"MODELLOOP_BODY_TIMEOUT_SECONDS": str(TIMEOUT)}) as s:
        yield s


def connect(server: ServerProcess, timeout: float = TIMEOUT + SLACK + 5) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.settimeout(timeout)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def read_response(s: socket.socket) -> bytes:
    """One response (headers and a Content-Length body), leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def request(server: ServerProcess, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{server.port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


def assert_timed_out(reply: bytes, started: float) -> None:
    elapsed = time.monotonic() - started
    assert TIMEOUT - 0.1 <= elapsed <= TIMEOUT + SLACK, elapsed
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 408"), reply
    assert "connection: close" in lines, reply
    assert "content-type: application/json" in lines, reply
    assert "x-content-type-options: nosniff" in lines, reply
    assert "did not arrive" in json.loads(body)["error"]


@pytest.mark.parametrize("path", [f"/v1/models/{MODEL}/predict", "/v1/feedback"])
def test_a_body_that_does_not_arrive_in_time_gets_408(server: ServerProcess, path: str) -> None:
    """The fast path and a FastAPI route alike: 1 byte of 100, then nothing."""
    with connect(server) as s:
        started = time.monotonic()
        s.sendall(request(server, path, b"{" + b" " * 99)[:-99])
        assert_timed_out(read_all(s), started)
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200


def test_headers_that_do_not_arrive_in_time_get_408(server: ServerProcess) -> None:
    with connect(server) as s:
        started = time.monotonic()
        s.sendall(f"POST /v1/models/{MODEL}/predict HTTP/1.1\r\nhost: x\r\n".encode())
        assert_timed_out(read_all(s), started)
    # The same after a first request on the connection (its keep-alive timer stops at the
    # next request's first byte).
    with connect(server) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        s.sendall(b"GET /v2/health/li")
        assert_timed_out(read_all(s), started)


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with connect(server) as s:
        started = time.monotonic()
        assert read_all(s) == b""  # nothing was asked, so nothing is answered
        assert time.monotonic() - started <= TIMEOUT + SLACK


def test_a_slow_request_that_arrives_in_time_is_answered(server: ServerProcess) -> None:
    raw = request(
        server, f"/v1/models/{MODEL}/predict", json.dumps({"instances": [row(1)]}).encode()
    )
    with connect(server) as s:
        for i in range(0, len(raw), len(raw) // 4 + 1):
            s.sendall(raw[i : i + len(raw) // 4 + 1])
            time.sleep(TIMEOUT / 8)
        reply = read_response(s)
    assert reply.startswith(b"HTTP/1.1 200"), reply


def test_connections_over_the_limit_get_503_and_service_resumes(
    template_home: Path, tmp_path: Path
) -> None:
    home = copy_home(template_home, tmp_path / "home")
    live = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"
    with running_server(home, {"MODELLOOP_MAX_CONNECTIONS": "4"}) as server:
        held = [connect(server, 10.0) for _ in range(4)]
        try:
            for s in held:  # each answered, and kept open (keep-alive)
                s.sendall(live)
                assert read_response(s).startswith(b"HTTP/1.1 200")
            with connect(server, 10.0) as extra:
                extra.sendall(live)
                reply = read_all(extra)
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), reply
            assert b"connection: close" in head.lower(), reply
            assert b"x-content-type-options: nosniff" in head.lower(), reply
            assert "too many connections" in json.loads(body)["error"]
            for s in held:  # the held connections are still served
                s.sendall(live)
                assert read_response(s).startswith(b"HTTP/1.1 200")
        finally:
            for s in held[:2]:
                s.close()
        try:
            deadline = time.monotonic() + 10
            while True:  # the server sees the closes a moment later
                r = httpx.post(
                    server.url + f"/v1/models/{MODEL}/predict", json={"instances": [row(1)]}
                )
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert r.status_code == 200, r.text
        finally:
            for s in held[2:]:
                s.close()


def test_a_request_still_arriving_does_not_hold_up_a_stop(
    template_home: Path, tmp_path: Path
) -> None:
    """uvicorn waits for open requests on SIGTERM (30 s at most, here); one whose body never
    comes is timed out meanwhile, so the drain ends soon after the timeout."""
    home = copy_home(template_home, tmp_path / "home")
    server = ServerProcess(home, {"MODELLOOP_BODY_TIMEOUT_SECONDS": str(TIMEOUT)}).start()
    try:
        with connect(server) as s:
            s.sendall(request(server, f"/v1/models/{MODEL}/predict", b"{" + b" " * 99)[:-99])
            time.sleep(0.2)
            started = time.monotonic()
            server.terminate()
            assert server.wait(TIMEOUT + SLACK + 10) == 0
            assert time.monotonic() - started <= TIMEOUT + SLACK
            assert read_all(s).startswith(b"HTTP/1.1 408")
    finally:
        server.stop()


def test_a_request_that_is_not_http_gets_a_json_400_with_nosniff(server: ServerProcess) -> None:
    with connect(server) as s:
        s.sendall(b"HELLO THERE\x00\r\n\r\n")
        reply = read_all(s)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 400"), reply
    assert "x-content-type-options: nosniff" in lines, reply
    assert "content-type: application/json" in lines, reply
    assert "connection: close" in lines, reply
    assert "invalid" in json.loads(body)["error"].lower()
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200
