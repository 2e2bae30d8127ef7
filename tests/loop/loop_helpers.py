"""Real processes for the loop's end-to-end tests: service, monitor and trainer on one home."""

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from modelloop.training import synthetic

MODEL = "default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOOP_SETTINGS = {
    "MODELLOOP_POLL_INTERVAL": "0.5",
    "MODELLOOP_MONITOR_INTERVAL": "0.5",
    "MODELLOOP_SETTLE_SECONDS": "0.2",
    "MODELLOOP_REPORT_SECONDS": "1",
    "MODELLOOP_TRAINER_POLL": "0.5",
    "OMP_NUM_THREADS": "1",
}


class Processes:
    """Named `modelloop` processes, each logging to `<log_dir>/<name>.log`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _wait(self, url: str, timeout: float = 90.0) -> None:
        """Until `url` answers 200. If it never does, or a process exits, every process is
        stopped before the error is raised: a start that fails leaves no server behind."""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for name, p in self.procs.items():
                    assert p.poll() is None, f"{name} exited:\n{self.log(name)}"
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        return
                time.sleep(0.1)
            raise AssertionError(f"{url} not ready in {timeout} s")
        except BaseException:
            self.stop()
            raise

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


class Loop(Processes):
    """`modelloop serve`, `monitor` and `trainer` as separate processes sharing `home`."""

    def __init__(self, home: Path, **settings: str) -> None:
        super().__init__(home)
        self.home = home
        self.port, self.monitor_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.monitor_url = f"http://127.0.0.1:{self.monitor_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
        env.update(
            {
                "MODELLOOP_HOME": str(home),
                "MODELLOOP_PORT": str(self.port),
                # a free gRPC port: the default (8081) would be shared with any other server
                "MODELLOOP_GRPC_PORT": str(free_port()),
                "MODELLOOP_MONITOR_PORT": str(self.monitor_port),
                **LOOP_SETTINGS,
                **settings,
            }
        )
        self.env = env

    def start(self) -> "Loop":
        exe = str(Path(sys.executable).with_name("modelloop"))
        for name in ("serve", "monitor", "trainer"):
            with open(self.home / f"{name}.log", "wb") as out:
                self.procs[name] = subprocess.Popen(
                    [exe, name],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.home,
                )
        self._wait(self.url + "/v2/health/ready")
        self._wait(self.monitor_url + "/metrics")
        return self


def instances(frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
    rows, labels = [], []
    for rec in frame.to_dict("records"):
        labels.append(rec.pop(synthetic.TARGET))
        rows.append(
            {
                k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                for k, v in rec.items()
            }
        )
    return rows, labels


class Client:
    """Sends rows in batches, keeps what was served, posts feedback."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60.0)

    def send(
        self, frame: pd.DataFrame, batch: int = 500, feedback: bool = False
    ) -> tuple[float, list[int]]:
        """Predict every row; return (accuracy of the served labels, versions that served)."""
        rows, labels = instances(frame)
        hits = 0
        versions: list[int] = []
        for i in range(0, len(rows), batch):
            r = self.http.post(
                f"/v1/models/{MODEL}/predict", json={"instances": rows[i : i + batch]}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            versions.append(body["version"])
            truth = labels[i : i + batch]
            hits += sum(p["label"] == t for p, t in zip(body["predictions"], truth, strict=True))
            if feedback:
                items = [
                    {"id": p["id"], "label": t}
                    for p, t in zip(body["predictions"], truth, strict=True)
                ]
                f = self.http.post("/v1/feedback", json={"items": items})
                assert f.status_code == 200, f.text
                assert f.json()["matched"] == len(items)
        return hits / len(rows), versions

    def close(self) -> None:
        self.http.close()


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
