"""A real Prometheus (the Debian `prometheus` binary, on 127.0.0.1) scrapes a running
`modelloop serve` and `modelloop monitor` every second, with deploy/'s rules loaded; traffic
goes to the service; the query API must give back the request rate, latency quantiles
(histogram_quantile), drift gauges and the recording rules the dashboard reads."""

import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from deploy_helpers import RULES, free_port, tool

pytestmark = pytest.mark.slow

FEATURES = [
    "age",
    "income",
    "tenure_months",
    "sessions_per_week",
    "support_tickets",
    "region",
    "plan",
    "device",
]


class Proc:
    """A child process with its output in a file; always stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log_path = cwd / f"{name}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.alive()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{proc.log()}")


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


def instances(n: int, seed: int) -> list[dict[str, Any]]:
    from modelloop.training.synthetic import generate

    frame = generate(n, seed).drop(columns=["churned"])
    rows = frame.to_dict("records")
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10.0)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def eventually(prom: str, expr: str, ok: Any, procs: list[Proc], timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    last: list = []
    while time.monotonic() < deadline:
        for p in procs:
            p.alive()
        last = query(prom, expr)
        if last and ok(last):
            return last
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.log()}" for p in procs)
    raise AssertionError(f"{expr}: no good answer within {timeout} s; last: {last}\n{logs}")


def test_prometheus_scrapes_service_and_monitor(tmp_path: Path) -> None:
    from modelloop.store.registry import FolderRegistry
    from modelloop.training.pipeline import TrainRequest, run_training

    prometheus = tool("prometheus")
    promtool = tool("promtool")
    home = tmp_path / "home"
    run_training(
        TrainRequest(model="default", rows=2000, estimator="logreg"),
        FolderRegistry(home / "registry"),
    )

    serve_port, monitor_port, prom_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
    env.update(
        {
            "MODELLOOP_HOME": str(home),
            "MODELLOOP_GRPC_PORT": "0",  # not scraped; the default port may be taken
            "MODELLOOP_MONITOR_INTERVAL": "0.5",
            "MODELLOOP_SETTLE_SECONDS": "0.2",
            "MODELLOOP_LOG_FLUSH_SECONDS": "0.1",
        }
    )
    # the rules as deployed, evaluated every second instead of every 30 s
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for g in groups:
        g["interval"] = "1s"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "modelloop-serve",
                        "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}],
                    },
                    {
                        "job_name": "modelloop-monitor",
                        "static_configs": [{"targets": [f"127.0.0.1:{monitor_port}"]}],
                    },
                ],
            }
        )
    )
    check = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    exe = str(Path(sys.executable).with_name("modelloop"))
    prom = f"http://127.0.0.1:{prom_port}"
    with processes() as procs:
        procs.append(
            Proc(
                "serve",
                [exe, "serve", "--host", "127.0.0.1", "--port", str(serve_port)],
                env,
                tmp_path,
            )
        )
        procs.append(
            Proc(
                "monitor",
                [exe, "monitor", "--host", "127.0.0.1", "--port", str(monitor_port)],
                env,
                tmp_path,
            )
        )
        (tmp_path / "tsdb").mkdir()
        procs.append(
            Proc(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                tmp_path,
            )
        )
        serve, monitor, prom_proc = procs
        wait_http(serve, f"http://127.0.0.1:{serve_port}/v2/health/ready")
        wait_http(monitor, f"http://127.0.0.1:{monitor_port}/metrics")
        wait_http(prom_proc, f"{prom}/-/ready")

        # both targets up
        eventually(
            prom,
            "up",
            lambda r: len(r) == 2 and all(s["value"][1] == "1" for s in r),
            procs,
            timeout=30,
        )

        # traffic: 3 x 1000 rows (3 windows for the monitor), then a few seconds of small
        # requests so the rates have several scrapes to work on
        url = f"http://127.0.0.1:{serve_port}/v1/models/default/predict"
        with httpx.Client(timeout=30.0) as client:
            for i in range(3):
                r = client.post(url, json={"instances": instances(1000, seed=100 + i)})
                assert r.status_code == 200, r.text
            small = instances(200, seed=7)
            end = time.monotonic() + 6
            i = 0
            while time.monotonic() < end:
                r = client.post(url, json={"instances": small[i % 200 : i % 200 + 5]})
                assert r.status_code == 200, r.text
                i += 5
                time.sleep(0.05)

        # request rate
        rate = eventually(
            prom,
            'sum(rate(modelloop_requests_total{model="default", code="200"}[10s]))',
            lambda r: float(r[0]["value"][1]) > 0,
            procs,
        )
        assert float(rate[0]["value"][1]) > 0
        # latency quantiles from the histogram
        for q in ("0.5", "0.99"):
            lat = eventually(
                prom,
                f"histogram_quantile({q}, sum by (le) "
                '(rate(modelloop_request_duration_seconds_bucket{model="default"}[30s])))',
                lambda r: math.isfinite(float(r[0]["value"][1])),
                procs,
            )
            assert 0 < float(lat[0]["value"][1]) < 2.5
        # drift gauges for every feature, from the monitor's judged windows
        drift = eventually(
            prom,
            'modelloop_drift_score{model="default"}',
            lambda r: {s["metric"]["feature"] for s in r} >= set(FEATURES),
            procs,
        )
        assert all(s["metric"]["job"] == "modelloop-monitor" for s in drift)
        assert all(math.isfinite(float(s["value"][1])) for s in drift)
        rows = eventually(
            prom,
            'modelloop_drift_window_rows{model="default"}',
            lambda r: float(r[0]["value"][1]) >= 1000,
            procs,
        )
        assert float(rows[0]["value"][1]) >= 1000
        eventually(prom, 'modelloop_drift_detected{model="default"}', lambda r: True, procs)
        # the recording rules the dashboard reads, evaluated on the real series
        for expr, ok in [
            ("modelloop:requests:rate1m", lambda r: float(r[0]["value"][1]) > 0),
            (
                'modelloop:request_duration_seconds:quantile_rate5m{quantile="0.99"}',
                lambda r: math.isfinite(float(r[0]["value"][1])),
            ),
            ("modelloop:batch_rows:mean_rate5m", lambda r: float(r[0]["value"][1]) >= 1),
            (
                "modelloop:drift_score:threshold_ratio",
                lambda r: {s["metric"]["feature"] for s in r} >= set(FEATURES),
            ),
        ]:
            eventually(prom, expr, ok, procs)
        active = query(prom, "modelloop_model_active_version")
        assert [s["value"][1] for s in active] == ["1"]
        # the rules loaded and evaluate without errors
        r = httpx.get(f"{prom}/api/v1/rules", timeout=10.0).json()
        states = [
            (rule.get("name"), rule.get("health"), rule.get("lastError"))
            for g in r["data"]["groups"]
            for rule in g["rules"]
        ]
        assert states
        assert all(h == "ok" for _, h, _ in states), states
        # a graceful stop of both modelloop processes
        assert serve.stop() == 0, serve.log()
        assert monitor.stop() == 0, monitor.log()
