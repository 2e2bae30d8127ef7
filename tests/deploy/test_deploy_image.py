"""The Dockerfile, built and run in CI without pulling any image.

A Python base image is made with debootstrap (bookworm, the machine's apt mirror) and passed as
BASE; `buildah bud --isolation chroot --storage-driver vfs` builds the `serve` and `worker`
targets (pip reaches PyPI from inside the build, with the host's CA bundle mounted). Then:
- the serve image has no scikit-learn and no scipy; the worker image has both;
- `modelloop train` runs from the worker image, and `modelloop serve` (the serve image's own
  entrypoint) answers a prediction and /metrics, and the worker image's default command
  (`modelloop monitor`) answers /metrics: each as uid 10001 with the root filesystem mounted
  read-only, the data directory on MODELLOOP_HOME and a tmpfs on /tmp, like the pods;
- SIGTERM reaches the exec-form entrypoint: the service drains and exits 0.
Everything slow is cached under MODELLOOP_CI_CACHE (default /var/cache/modelloop-ci); on a
2-CPU runner the module takes ~5 minutes from an empty cache, ~4 with it (docs/deploy.md).
"""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
import deploy_imaging as imaging
from deploy_helpers import free_port, tool

pytestmark = pytest.mark.slow

UID = 10001


@pytest.fixture(scope="module")
def images() -> dict[str, Any]:
    for t in ("buildah", "debootstrap", "unshare", "chroot"):
        tool(t)
    if os.geteuid() != 0:
        pytest.skip("building with buildah (vfs, chroot) and mounting images needs root")
    return imaging.build_all()


def in_image(
    rootfs: Path,
    config: dict[str, Any],
    data: Path,
    argv: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    cmd = imaging.chroot_command(rootfs, config, data, argv=argv, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@contextlib.contextmanager
def started(
    rootfs: Path, config: dict[str, Any], data: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen]:
    """The image's own entrypoint + command, in the background; always stopped."""
    cmd = imaging.chroot_command(rootfs, config, data, env=env)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_ok(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not answering after {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    os.chown(d, UID, UID)
    return d


def test_serve_image_has_no_training_libraries(images: dict[str, Any], data: Path) -> None:
    config = imaging.image_config(images["serve"])
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["modelloop"]
    assert config["Cmd"] == ["serve"]
    check = config["Healthcheck"]["Test"]
    assert check == ["CMD", "python3", "/opt/modelloop/healthcheck.py"], check
    probe = (
        "import importlib.util as u, sys; import modelloop.service.app, modelloop.cli; "
        "missing = [m for m in ('sklearn', 'scipy', 'pandas', 'skl2onnx') if u.find_spec(m)]; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')]; "
        "print(missing, loaded); sys.exit(1 if missing or loaded else 0)"
    )
    with imaging.mounted(images["serve"]) as rootfs:
        out = in_image(rootfs, config, data, ["python3", "-c", probe])
        assert out.returncode == 0, out.stdout + out.stderr
        # the root filesystem really is read-only in these runs
        out = in_image(rootfs, config, data, ["python3", "-c", "open('/opt/x', 'w')"])
        assert out.returncode != 0
        assert "Read-only file system" in out.stderr, out.stderr


def test_worker_trains_and_serve_image_serves(
    images: dict[str, Any], data: Path, tmp_path: Path
) -> None:
    worker_cfg = imaging.image_config(images["worker"])
    serve_cfg = imaging.image_config(images["serve"])
    with imaging.mounted(images["worker"]) as rootfs:
        out = in_image(
            rootfs,
            worker_cfg,
            data,
            ["python3", "-c", "import sklearn, scipy, skl2onnx, modelloop.training"],
        )
        assert out.returncode == 0, out.stderr
        # the one-off training Job's command, from the worker image
        out = in_image(
            rootfs,
            worker_cfg,
            data,
            ["modelloop", "train", "--model", "default", "--rows", "2000", "--estimator", "logreg"],
            timeout=600,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert (data / "registry" / "default" / "active").exists()
        # its default command: the monitor, with /metrics
        port = free_port()
        log = tmp_path / "monitor.log"
        env = {
            "MODELLOOP_MONITOR_HOST": "127.0.0.1",
            "MODELLOOP_MONITOR_PORT": str(port),
            "MODELLOOP_MONITOR_INTERVAL": "0.5",
        }
        with started(rootfs, worker_cfg, data, env, log) as proc:
            wait_ok(proc, f"http://127.0.0.1:{port}/metrics", log)
            r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert "modelloop_monitor_last_check_timestamp_seconds" in r.text
    with imaging.mounted(images["serve"]) as rootfs:
        port = free_port()
        log = tmp_path / "serve.log"
        env = {"MODELLOOP_HOST": "127.0.0.1", "MODELLOOP_PORT": str(port)}
        url = f"http://127.0.0.1:{port}"
        with started(rootfs, serve_cfg, data, env, log) as proc:
            wait_ok(proc, f"{url}/v2/health/ready", log)
            row = {
                "age": 40,
                "income": 52000.0,
                "tenure_months": 12,
                "sessions_per_week": 3.5,
                "support_tickets": 1,
                "region": "north",
                "plan": "pro",
                "device": "ios",
            }
            r = httpx.post(
                f"{url}/v1/models/default/predict", json={"instances": [row, row]}, timeout=30
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["predictions"]) == 2, body
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(metrics)
                for s in fam.samples
            }
            ok = [
                v
                for (name, labels), v in samples.items()
                if name == "modelloop_requests_total"
                and ("code", "200") in labels
                and ("endpoint", "predict") in labels
            ]
            assert ok == [1.0], metrics
            assert samples[("modelloop_model_active_version", (("model", "default"),))] == 1
            # SIGTERM reaches the exec-form entrypoint: a graceful drain, exit 0
            proc.terminate()
            assert proc.wait(40) == 0, log.read_text()[-4000:]
        assert (data / "modelloop.db").exists()
    # everything the processes wrote is on the data volume, owned by the image's user
    for p in data.rglob("*"):
        assert p.stat().st_uid == UID, p
