"""Every hostile input at once, against a real `modelloop serve` under good traffic, on SQLite
and PostgreSQL: no good request fails, no answer is a 5xx (bar the connection limit's
documented 503), each hostile request gets the 4xx that names its fault, and every
acknowledged prediction is in the log exactly once after the SIGTERM drain."""

import json
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import MODEL, Load, ServerProcess, oip_inputs, row, running_server
from test_svc_log_outage import logged_ids

BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 48
GOOD_THREADS = 3


def post(server: ServerProcess, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(server.url + path, content=body, headers=headers, timeout=30)


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


JSON = {"content-type": "application/json"}
INFER = f"/v2/models/{MODEL}/infer"
PREDICT = f"/v1/models/{MODEL}/predict"


def hostile_requests(server: ServerProcess) -> list[tuple[str, Callable[[], httpx.Response], int]]:
    """(what, send, the status it must get)."""
    digits = "9" * 5000
    surrogate = as_json(
        {"inputs": oip_inputs([dict(row(1), age=math.nan, plan="\ud800")])}
    )  # NaN sends the body to the stdlib parser, which takes the lone surrogate
    oip_long_id = as_json({"id": "x" * 200, "inputs": oip_inputs([row(2)])})
    oip_nul_id = as_json({"id": "a\x00b", "inputs": oip_inputs([row(3)])})
    tilde_ids = as_json({"ids": ["~AAAAAAAAAAAAAAAAAAAAAA:0"], "instances": [row(4)]})
    control_ids = as_json({"ids": ["id\x07bell"], "instances": [row(5)]})
    comma_ids = as_json({"ids": ["a,b"], "instances": [row(6)]})
    good = as_json({"instances": [row(7)]})
    nested = b"[" * 100_000 + b"]" * 100_000
    huge = b'{"instances": [' + b"0," * (1 << 20) + b"0]}"
    return [
        ("lone surrogate in OIP BYTES", lambda: post(server, INFER, surrogate, **JSON), 422),
        ("OIP id over 128 characters", lambda: post(server, INFER, oip_long_id, **JSON), 422),
        ("OIP id with NUL", lambda: post(server, INFER, oip_nul_id, **JSON), 422),
        (
            "caller id in the generated namespace",
            lambda: post(server, PREDICT, tilde_ids, **JSON),
            422,
        ),
        (
            "caller id with a control character",
            lambda: post(server, PREDICT, control_ids, **JSON),
            422,
        ),
        ("caller id with a comma", lambda: post(server, PREDICT, comma_ids, **JSON), 422),
        (
            "5,000-digit version (OIP)",
            lambda: httpx.get(f"{server.url}/v2/models/{MODEL}/versions/{digits}", timeout=30),
            404,
        ),
        (
            "5,000-digit version (v1)",
            lambda: post(server, f"/v1/models/{MODEL}/versions/{digits}/predict", good, **JSON),
            404,
        ),
        (
            "cross-site text/plain predict",
            lambda: post(server, PREDICT, good, **{"content-type": "text/plain"}),
            415,
        ),
        (
            "cross-site text/plain infer",
            lambda: post(
                server,
                INFER,
                as_json({"inputs": oip_inputs([row(8)])}),
                **{"content-type": "text/plain"},
            ),
            415,
        ),
        (
            "browser infer without a content type",
            lambda: post(
                server,
                INFER,
                as_json({"inputs": oip_inputs([row(9)])}),
                origin="https://evil.example",
            ),
            415,
        ),
        ("predict without a content type", lambda: post(server, PREDICT, good), 415),
        ("JSON nested 100,000 deep", lambda: post(server, PREDICT, nested, **JSON), 400),
        ("a 2 MiB body", lambda: post(server, PREDICT, huge, **JSON), 413),
        ("not JSON", lambda: post(server, PREDICT, b"{'instances':", **JSON), 400),
        (
            "unknown feature",
            lambda: post(server, PREDICT, as_json({"instances": [dict(row(10), evil=1)]}), **JSON),
            422,
        ),
        (
            "model name with a path in it",
            lambda: post(server, "/v1/models/..%2F..%2Fetc/predict", good, **JSON),
            404,
        ),
    ]


def slow_body(server: ServerProcess) -> bytes:
    """Headers promising 100 bytes, then 1 byte: the server must answer 408 and close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=BODY_TIMEOUT + 10) as s:
        s.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "content-length: 100\r\n\r\n{".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def connection_flood(server: ServerProcess) -> Counter[str]:
    """More idle connections than the limit: the extra ones get a JSON 503 and are closed."""
    socks = []
    outcomes: Counter[str] = Counter()
    try:
        for _ in range(MAX_CONNECTIONS + 10):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        for s in socks:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        for s in socks:
            try:
                head = s.recv(65536).split(b"\r\n", 1)[0].decode()
            except TimeoutError:
                head = "timeout"
            outcomes[head] += 1
    finally:
        for s in socks:
            s.close()
    return outcomes


@pytest.mark.slow
def test_hostile_input_all_at_once_fails_alone(home: Path, db_url: str) -> None:
    env = {
        "MODELLOOP_DATABASE_URL": db_url,
        "MODELLOOP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "MODELLOOP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "MODELLOOP_LOG_FLUSH_SECONDS": "0.05",
    }
    answers: list[tuple[str, int, int, str]] = []
    with running_server(home, env) as server, Load(server.url, threads=GOOD_THREADS) as load:
        load.wait_ok(100)
        attack = hostile_requests(server)

        def attacker(offset: int) -> None:
            for what, send, expected in attack[offset:] + attack[:offset]:
                r = send()
                answers.append((what, r.status_code, expected, r.text[:200]))

        threads = [threading.Thread(target=attacker, args=(k * 5,)) for k in range(3)]
        for t in threads:
            t.start()
        reply = slow_body(server)
        # A folder in the registry root that is no model name (every ext4 root has one).
        (home / "registry" / "lost+found").mkdir()
        for t in threads:
            t.join()
        flood = connection_flood(server)  # alone: the attackers' new connections would count
        time.sleep(1.5)  # a poll or two with the stray folder in place
        listing = httpx.get(server.url + "/v1/models", timeout=30)
        good_before = load.result.ok
        load.wait_ok(good_before + 100)
        result = load.stop()
        assert server.stop() == 0
    wrong = [a for a in answers if a[1] != a[2]]
    assert not wrong, wrong
    assert len(answers) == 3 * len(attack)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert flood["HTTP/1.1 200 OK"] >= 1, flood
    assert set(flood) <= {"HTTP/1.1 200 OK", "HTTP/1.1 503 Service Unavailable"}, flood
    assert flood["HTTP/1.1 503 Service Unavailable"] >= 1, flood
    assert listing.status_code == 200
    assert [m["name"] for m in listing.json()["models"]] == [MODEL]
    assert result.failures == 0, result.errors[:5]
    logged = Counter(logged_ids(db_url))
    assert [i for i, n in logged.items() if n > 1] == []
    assert set(logged) == set(result.acknowledged_ids)
    assert len(result.acknowledged_ids) == len(set(result.acknowledged_ids)) >= 200
