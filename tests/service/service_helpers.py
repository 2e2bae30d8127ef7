"""Helpers for the service tests: rows of the churn data set, a real server process, metrics."""

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from log_helpers import logged_rows
from modelloop.store.database import open_database
from modelloop.store.registry import Registry

# Starlette 1.x warns that its TestClient prefers `httpx2`; the warning is about the client
# library, not about the code under test, so it is silenced for this one import only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]

MODEL = "default"
NUMERIC = ["age", "income", "tenure_months", "sessions_per_week", "support_tickets"]
CATEGORICAL = ["region", "plan", "device"]
FEATURES = NUMERIC + CATEGORICAL
REGIONS = ["east", "north", "south", "west"]
PLANS = ["basic", "plus", "pro"]
DEVICES = ["android", "ios", "web"]
ADMIN_TOKEN = "test-admin-token-0123456789"


def row(i: int = 0) -> dict[str, Any]:
    """A valid instance near the training distribution (so probabilities spread out);
    different `i` give different rows and, nearly always, different probabilities."""
    return {
        "age": 25 + (i * 7) % 35,
        "income": 25_000.5 + (i * 7919) % 50_000,
        "tenure_months": (i * 13) % 48,
        "sessions_per_week": 1.0 + (i * 3) % 9 * 0.75,
        "support_tickets": (i * 5) % 4,
        "region": REGIONS[i % 4],
        "plan": PLANS[(i // 4) % 3],
        "device": DEVICES[(i // 12) % 3],
    }


def oip_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON tensors of the Open Inference Protocol, one [rows, 1] input per feature."""
    n = len(rows)
    return [
        {
            "name": name,
            "datatype": "FP32" if name in NUMERIC else "BYTES",
            "shape": [n, 1],
            "data": [r[name] for r in rows],
        }
        for name in FEATURES
    ]


def predictions_in_db(home: Path) -> list[dict[str, Any]]:
    """The prediction log of `home`'s SQLite database, oldest first."""
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        return logged_rows(db, MODEL)
    finally:
        db.dispose()


# -- versions that must never serve --------------------------------------------------------


def publish_corrupt(registry: Registry) -> int:
    """A copy of version 1 whose model.onnx is then overwritten: its sha256 no longer
    matches the metadata. (Registry.promote refuses it; see `point_active`.)"""
    version = registry.publish(
        MODEL,
        registry.onnx_bytes(MODEL, 1),
        registry.metadata(MODEL, 1),
        registry.reference(MODEL, 1),
    ).version
    (registry.version_dir(MODEL, version) / "model.onnx").write_bytes(b"not a graph" * 20)
    return version


def publish_garbage(registry: Registry) -> int:
    """A version published properly (its hash matches) whose graph ONNX Runtime cannot load."""
    meta = registry.metadata(MODEL, 1)
    return registry.publish(
        MODEL, b"\x08\x07garbage" * 50, meta, registry.reference(MODEL, 1)
    ).version


def publish_other_schema(registry: Registry) -> int:
    """Version 1's graph with metadata that promises other input features."""
    meta = registry.metadata(MODEL, 1)
    features = [
        f.model_copy(update={"name": "age_years"}) if f.name == "age" else f for f in meta.features
    ]
    other = meta.model_copy(update={"features": features})
    return registry.publish(
        MODEL, registry.onnx_bytes(MODEL, 1), other, registry.reference(MODEL, 1)
    ).version


BREAKERS: list[Callable[[Registry], int]] = [publish_corrupt, publish_garbage, publish_other_schema]


def point_active(registry: Registry, version: int) -> None:
    """Move the active pointer the way the registry does (atomic replace), without its checks."""
    d = registry.model_dir(MODEL)
    tmp = d / ".active-test"
    tmp.write_text(f"{version}\n")
    os.replace(tmp, d / "active")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_template(home: Path) -> Path:
    """Train into `home`'s registry `default` v1 (logreg, active) and v2 (random forest,
    published but not active)."""
    from modelloop.store.registry import FolderRegistry
    from modelloop.training.pipeline import TrainRequest, run_training

    registry = FolderRegistry(home / "registry")
    first = run_training(
        TrainRequest(model=MODEL, rows=2000, seed=0, estimator="logreg", promote="always"),
        registry,
    )
    second = run_training(
        TrainRequest(model=MODEL, rows=2000, seed=1, estimator="random_forest", promote="never"),
        registry,
    )
    assert (first.metadata.version, second.metadata.version) == (1, 2)
    assert registry.active(MODEL) == 1
    return home


def copy_home(template: Path, dest: Path) -> Path:
    """A private data directory holding a copy of the trained registry."""
    shutil.copytree(template / "registry", dest / "registry")
    return dest


# -- metrics -------------------------------------------------------------------------------


def metric_families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_sum(text: str, sample: str, **labels: str) -> float:
    """Sum of every sample called `sample` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def label_values(text: str, label: str) -> set[str]:
    found: set[str] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if label in s.labels:
                found.add(s.labels[label])
    return found


def assert_error(response: httpx.Response, status: int, *words: str) -> str:
    """The response has `status` and a body of exactly {"error": text}; text contains words."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str), body
    assert message, body
    for word in words:
        assert word in message, (word, message)
    return message


def assert_prediction(pred: dict[str, Any]) -> None:
    assert set(pred) == {"label", "probabilities", "id"}, pred
    probs = pred["probabilities"]
    assert set(probs) == {"no", "yes"}, probs
    assert all(0.0 <= p <= 1.0 and math.isfinite(p) for p in probs.values()), probs
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred["label"] == max(probs, key=probs.get), pred
    assert isinstance(pred["id"], str), pred
    assert pred["id"], pred


# -- a real server process -----------------------------------------------------------------


class ServerProcess:
    """`modelloop serve` in its own process on a free loopback port."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / f"server-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
        # A free gRPC port of its own: the default (8081) would be shared by every server.
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        base.update(
            {"MODELLOOP_HOME": str(home), "MODELLOOP_GRPC_PORT": str(self.grpc_port), **(env or {})}
        )
        self.env = base
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        exe = Path(sys.executable).with_name("modelloop")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/v2/health/ready", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server not ready within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def terminate(self) -> None:
        """Send SIGTERM (a graceful stop) without waiting."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; kill if it does not stop. Safe to call twice."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        return self.returncode

    def metrics(self) -> str:
        r = httpx.get(self.url + "/metrics", timeout=10.0)
        r.raise_for_status()
        return r.text


@contextlib.contextmanager
def running_server(home: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(home, env)
    try:
        yield server.start()
    finally:
        server.stop()


# -- load generation -----------------------------------------------------------------------


@dataclass
class LoadResult:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    versions: set[int] = field(default_factory=set)
    acknowledged_ids: list[str] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def failures(self) -> int:
        return self.requests - self.ok


class Load:
    """Client threads sending 1-row predictions until stopped (or until their first error)."""

    def __init__(
        self,
        url: str,
        threads: int,
        stop_on_error: bool = False,
        limit: int | None = None,
        body: Callable[[int, int], dict[str, Any]] | None = None,
    ) -> None:
        self.url = url
        self.n = threads
        self.stop_on_error = stop_on_error
        self.limit = limit
        self.body = body or (lambda t, i: {"instances": [row(t * 100_000 + i)]})
        self.result = LoadResult()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._worker, args=(t,), daemon=True) for t in range(threads)
        ]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return self.result

    def wait_ok(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.result.ok < count:
            assert time.monotonic() < deadline, f"only {self.result.ok} answers in {timeout} s"
            time.sleep(0.01)

    def _worker(self, t: int) -> None:
        res = self.result
        i = 0
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set():
                if self.limit is not None:
                    with res.lock:
                        if res.requests >= self.limit:
                            return
                        res.requests += 1
                else:
                    with res.lock:
                        res.requests += 1
                body = self.body(t, i)
                i += 1
                try:
                    r = client.post(f"/v1/models/{MODEL}/predict", json=body)
                except httpx.TransportError as e:
                    with res.lock:
                        res.errors.append(f"{type(e).__name__}: {e}")
                    if self.stop_on_error:
                        return
                    continue
                with res.lock:
                    res.statuses[r.status_code] = res.statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        out = r.json()
                        res.versions.add(out["version"])
                        res.acknowledged_ids.extend(p["id"] for p in out["predictions"])
                    else:
                        res.errors.append(f"{r.status_code}: {r.text[:200]}")
                if r.status_code != 200 and self.stop_on_error:
                    return
