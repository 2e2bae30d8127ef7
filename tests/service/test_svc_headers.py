"""Security headers: `X-Content-Type-Options: nosniff` on every response (the fast path, the
FastAPI routes, the body limit's answers, errors), and on the report page a Content-Security-
Policy and `Referrer-Policy: no-referrer`, checked in a real headless chromium."""

import base64
import contextlib
import hashlib
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from service_helpers import ADMIN_TOKEN, MODEL, oip_inputs, row, running_server

from chromium import CHROMIUM_FLAGS
from modelloop.monitoring.report_page import render
from modelloop.service.app import create_app
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import open_database
from modelloop.store.registry import FolderRegistry
from modelloop.store.reports import ReportPages

BIG = 1 << 20  # the default body limit
_json = {"content-type": "application/json"}
_text = {"content-type": "text/plain"}


def _calls() -> list[tuple[str, str, dict[str, Any]]]:
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    one = {"instances": [row(1)]}
    return [
        # the fast path: answers, and its own errors
        ("post", f"/v1/models/{MODEL}/predict", {"json": one}),
        ("post", f"/v1/models/{MODEL}/versions/2/predict", {"json": one}),
        ("post", f"/v2/models/{MODEL}/infer", {"json": {"inputs": oip_inputs([row(1)])}}),
        ("post", f"/v2/models/{MODEL}/versions/1/infer", {"json": {"inputs": []}}),
        ("post", f"/v1/models/{MODEL}/predict", {"content": b"{", "headers": _json}),
        ("post", f"/v1/models/{MODEL}/predict", {"content": b"{}", "headers": _text}),
        ("post", f"/v1/models/{MODEL}/predict", {"content": b" " * (BIG + 1), "headers": _json}),
        ("post", "/v1/models/nope/predict", {"json": one}),
        # FastAPI routes, their errors, and the body limit in front of them
        ("get", "/v1/models", {}),
        ("get", f"/v1/models/{MODEL}", {}),
        ("get", f"/v1/models/{MODEL}/drift", {}),
        ("get", f"/v1/models/{MODEL}/report", {}),
        ("get", f"/v2/models/{MODEL}", {}),
        ("get", "/v2/health/ready", {}),
        ("get", "/metrics", {}),
        ("get", "/openapi.json", {}),
        ("get", "/docs", {}),
        ("get", "/no/such/endpoint", {}),
        ("delete", f"/v1/models/{MODEL}", {}),
        ("post", "/v1/feedback", {"json": {"items": "x"}}),
        ("post", "/v1/feedback", {"content": b"{}", "headers": _text}),
        ("post", "/v1/feedback", {"content": b" " * (BIG + 1), "headers": _json}),
        ("get", "/v1/admin/jobs", {}),
        ("get", "/v1/admin/jobs", {"headers": auth}),
    ]


def test_every_response_says_nosniff(make_client: Callable[..., TestClient]) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    statuses = set()
    for method, path, kwargs in _calls():
        r = client.request(method, path, **kwargs)
        statuses.add(r.status_code)
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], (method, path)
    assert {200, 400, 401, 404, 405, 413, 415, 422} <= statuses


def test_an_unexpected_error_says_nosniff_too(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServiceSettings(home=home, database_url=None, admin_token=None, poll_interval=60)
    app = create_app(settings)

    def broken() -> list[str]:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.state.service.registry, "models", broken)
        r = client.get("/v1/models")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error"}
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]


def _put_page(home: Path) -> str:
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        html = render(MODEL, FolderRegistry(home / "registry"), db)
        ReportPages(db).put(MODEL, html)
    finally:
        db.dispose()
    return html


def _style_hashes(html: str) -> set[str]:
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    }


def _directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_the_report_page_has_a_policy_that_allows_only_its_own_styles(
    home: Path, make_client: Callable[..., TestClient]
) -> None:
    html = _put_page(home)
    r = make_client().get(f"/v1/models/{MODEL}/report")
    assert r.status_code == 200, r.text
    assert r.text == html
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    policy = _directives(r.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]  # so no script, image, font, frame, connect
    assert "script-src" not in policy
    assert set(policy["style-src"]) == _style_hashes(html) != set()
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert "<script" not in html  # what the policy relies on: no script, no style attribute
    assert "style=" not in html
    # The JSON routes need no such policy.
    assert "content-security-policy" not in make_client().get("/v1/models").headers


CONSOLE_FLAGS = [*CHROMIUM_FLAGS, "--enable-logging=stderr", "--v=0"]  # CSP reports on stderr


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (CI installs it: .ci/tools.sh)")
    return found


def _dump_dom(chromium: str, url: str, profile: Path) -> tuple[str, str]:
    done = subprocess.run(
        [chromium, *CONSOLE_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout, done.stderr


@contextlib.contextmanager
def _serving(body: bytes, headers: dict[str, str]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.slow
def test_the_report_page_renders_under_its_policy_in_chromium(home: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    html = _put_page(home)
    with running_server(home) as server:
        url = f"{server.url}/v1/models/{MODEL}/report"
        dom, log = _dump_dom(chromium, url, tmp_path / "profile")
        policy = httpx.get(url, timeout=10).headers["content-security-policy"]
    assert dom.count("<svg") >= 2, dom[:2000]
    assert "<style>" in dom
    assert "Content Security Policy" not in log, log
    # The check can see a violation: the same page under a policy without its style's hash.
    refused = re.sub(r"style-src [^;]*", "style-src 'none'", policy)
    assert refused != policy
    headers = {"content-type": "text/html; charset=utf-8", "content-security-policy": refused}
    with _serving(html.encode(), headers) as other:
        _, log = _dump_dom(chromium, other, tmp_path / "profile-2")
    assert "Content Security Policy" in log, log
