"""The service on an S3 registry (a real SeaweedFS), in real processes: it swaps within 2 s of a
promote with no failed request, keeps serving while the store is away (counting the failures),
starts from its cache when the store is down, and refuses to start on bad credentials."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from service_helpers import MODEL, Load, ServerProcess, row, running_server, sample_sum

from modelloop.store.registry import open_registry
from seaweed import Weed, upload_registry


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("modelloop")
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def served_version(server: ServerProcess) -> int:
    r = httpx.post(f"{server.url}/v1/models/{MODEL}/predict", json={"instances": [row()]})
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def test_a_promote_swaps_within_2_s_and_the_store_may_go_away(
    home: Path, s3_url: str, s3_env: dict[str, str], weed: Weed
) -> None:
    upload_registry(home / "registry", s3_url)
    env = {**s3_env, "MODELLOOP_REGISTRY": s3_url}
    with running_server(home, env) as server, Load(server.url, threads=2) as load:
        assert served_version(server) == 1
        load.wait_ok(50)
        base = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
        promoted = cli(
            {**base, **env, "MODELLOOP_HOME": str(home)}, "models", "promote", MODEL, "2"
        )
        assert promoted.returncode == 0, promoted.stderr
        start = time.monotonic()
        while served_version(server) != 2:
            assert time.monotonic() - start < 2.5, "no swap within 2 s of the promote"
            time.sleep(0.02)
        swap_seconds = time.monotonic() - start

        weed.pause()  # the object store stops answering
        try:
            before = load.result.ok
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
                assert ready.status_code == 200
                time.sleep(0.5)
            assert load.result.ok > before + 100
            errors = sample_sum(server.metrics(), "modelloop_registry_errors_total")
            assert errors >= 1
        finally:
            weed.resume()
        result = load.stop()
    assert result.failures == 0, result.errors[:5]
    assert result.versions == {1, 2}
    assert "registry unavailable" in server.log()
    print(f"swap after promote: {swap_seconds:.2f} s")


def test_a_restart_while_the_store_is_down_serves_from_the_cache(
    home: Path, s3_url: str, s3_env: dict[str, str], weed: Weed
) -> None:
    upload_registry(home / "registry", s3_url)
    env = {**s3_env, "MODELLOOP_REGISTRY": s3_url}
    with running_server(home, env) as server:
        assert served_version(server) == 1
    assert (home / "cache" / MODEL / "active").read_text().strip() == "1"
    weed.pause()
    try:
        with running_server(home, env) as server:
            assert served_version(server) == 1
            with Load(server.url, threads=1, limit=50) as load:
                load.wait_ok(50, timeout=30)
            assert load.result.failures == 0
            assert "local cache" in server.log()
    finally:
        weed.resume()


def test_bad_credentials_at_start_are_one_line_and_a_non_zero_exit(
    tmp_path: Path, s3_url: str, weed: Weed
) -> None:
    server = ServerProcess(tmp_path, {**weed.env(secret="wrong"), "MODELLOOP_REGISTRY": s3_url})
    exe = Path(sys.executable).with_name("modelloop")
    done = subprocess.run(
        [str(exe), "serve", "--port", str(server.port)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "refused" in lines[0]
    assert "modelloop-test" in lines[0]


def test_admin_promote_and_rollback_on_the_bucket(
    home: Path, s3_url: str, s3_env: dict[str, str], make_client: Any
) -> None:
    upload_registry(home / "registry", s3_url)
    admin = make_client(admin_token="t0ken-for-the-bucket", registry=s3_url)
    auth = {"Authorization": "Bearer t0ken-for-the-bucket"}
    r = admin.post(f"/v1/admin/models/{MODEL}/promote", headers=auth, json={"version": 2})
    assert r.status_code == 200, r.text
    assert r.json()["serving_version"] == 2
    r = admin.post(f"/v1/admin/models/{MODEL}/rollback", headers=auth, json={"reason": "t"})
    assert r.status_code == 200, r.text
    assert (r.json()["to_version"], r.json()["serving_version"]) == (1, 1)
    registry = open_registry(s3_url)
    assert registry.active(MODEL) == 1
    assert [h.action for h in registry.history(MODEL)] == ["promote", "promote", "rollback"]
    assert (home / "cache" / MODEL / "active").read_text().strip() == "1"
