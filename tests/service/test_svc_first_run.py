"""`modelloop up` with no admin token configured makes one, keeps it private, and prints it."""

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton
from service_helpers import ADMIN_TOKEN

from modelloop.service.settings import MIN_TOKEN, ServiceSettings
from modelloop.up import first_run_token


def _two_free_ports() -> int:
    """A port whose successor is free too (`up` puts the monitor on port + 1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two consecutive free ports")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_up(home: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """`modelloop up` on `home`; yields the service URL and the file its stderr goes to."""
    port = _two_free_ports()
    url = f"http://127.0.0.1:{port}"
    out_path = home / f"up-{port}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
    base.update({"MODELLOOP_HOME": str(home), "OMP_NUM_THREADS": "1", **env})
    exe = Path(sys.executable).with_name("modelloop")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            # a free gRPC port: the default (8081) would be shared with any other server
            [str(exe), "up", "--port", str(port), "--grpc-port", str(_free_port())],
            env=base,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "modelloop is up" not in out_path.read_text(errors="replace"):
            assert proc.poll() is None, out_path.read_text(errors="replace")
            assert time.monotonic() < deadline, out_path.read_text(errors="replace")
            time.sleep(0.1)
        time.sleep(0.3)  # the lines after "is up" are printed together
        yield url, out_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _jobs(url: str, token: str | None) -> int:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{url}/v1/admin/jobs", headers=headers, timeout=10).status_code


def test_first_run_token_is_one_the_service_accepts(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("fifteen-chars-x\n")  # below the minimum: replaced
    token, path = first_run_token(tmp_path)
    assert len(token) >= MIN_TOKEN
    assert token != "fifteen-chars-x"
    assert path.read_text() == f"{token}\n"
    settings = ServiceSettings(admin_token=path.read_text())  # as a Secret from the file
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == token
    assert first_run_token(tmp_path) == (token, path)


@pytest.mark.slow
def test_first_run_makes_a_private_token_prints_it_and_keeps_it(home: Path) -> None:
    with running_up(home) as (url, out):
        token_file = home / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        text = out.read_text()
        assert f"admin token (kept in {token_file}): {token}" in text
        grpc_line = re.search(r"OIP gRPC \(inference.GRPCInferenceService\): (\S+)", text)
        assert grpc_line, text
        assert triton.InferenceServerClient(grpc_line.group(1)).is_server_ready()
        line = re.search(
            r"curl -s -X POST \S+/retrain -H \"Authorization: Bearer \$\(cat (\S+)\)\"", text
        )
        assert line is not None, text
        assert Path(line.group(1)) == token_file.resolve()
        assert _jobs(url, token) == 200
        assert _jobs(url, None) == 401
        assert _jobs(url, "not-the-token-at-all") == 401
    with running_up(home) as (url, _):
        assert token_file.read_text().strip() == token  # the second run keeps it
        assert _jobs(url, token) == 200


@pytest.mark.slow
def test_a_token_file_readable_by_others_is_made_private(home: Path) -> None:
    token_file = home / "admin-token"
    token_file.write_text("an-old-token-of-at-least-16\n")
    token_file.chmod(0o644)
    with running_up(home) as (url, out):
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert "now mode 0600" in out.read_text()
        assert _jobs(url, "an-old-token-of-at-least-16") == 200


@pytest.mark.slow
def test_an_explicit_token_wins_and_off_turns_admin_off(home: Path) -> None:
    with running_up(home, MODELLOOP_ADMIN_TOKEN=ADMIN_TOKEN) as (url, _):
        assert _jobs(url, ADMIN_TOKEN) == 200
        assert not (home / "admin-token").exists()
    with running_up(home, MODELLOOP_ADMIN_TOKEN="off") as (url, out):
        assert _jobs(url, ADMIN_TOKEN) == 403
        assert "admin API off" in out.read_text()
        assert not (home / "admin-token").exists()
