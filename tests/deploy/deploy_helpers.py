"""Shared by tests/deploy: paths, rendering the kustomize overlays, the rule files, the metric
names the code exports, and the tools (found on PATH or in the venv; CI installs them with
.ci/tools.sh, and with CI=true a skipped test fails the run)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "modelloop.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "modelloop.rules.test.yml"
PROMETHEUS_RULE = K8S / "components" / "prometheus-operator" / "prometheusrule.yaml"
DASHBOARD = DEPLOY / "grafana" / "modelloop.json"
# checkov pins packaging<24, which the project's pytest (packaging>=24) cannot share a venv
# with: .ci/tools.sh installs it into a venv of its own.
CHECKOV_VENV = Path(os.environ.get("MODELLOOP_CHECKOV_VENV", "/opt/modelloop-ci/checkov"))


def tool(name: str) -> str:
    """The path of a command-line tool, or skip (a failure under CI=true)."""
    candidates = [Path(sys.executable).parent / name]
    if name == "checkov":
        candidates.insert(0, CHECKOV_VENV / "bin" / "checkov")
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (run .ci/tools.sh as root)")
    return found


def run(cmd: list[str], timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


@cache
def rendered(overlay: str) -> str:
    out = run([tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)], timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return out.stdout


def documents(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def by_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in documents(overlay) if d["kind"] == kind]


def pod_specs(overlay: str) -> dict[str, dict[str, Any]]:
    """name -> pod spec, for every Deployment and Job."""
    out = {}
    for d in documents(overlay):
        if d["kind"] in ("Deployment", "Job"):
            out[d["metadata"]["name"]] = d["spec"]["template"]["spec"]
    return out


def rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES.read_text())["groups"]


def prometheus_rule() -> dict[str, Any]:
    """The Prometheus Operator's PrometheusRule, generated from deploy/'s rule file."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "modelloop", "labels": {"app.kubernetes.io/name": "modelloop"}},
        "spec": {"groups": rule_groups()},
    }


def prometheus_rule_text() -> str:
    head = (
        "# GENERATED from deploy/prometheus/modelloop.rules.yml; do not edit. Regenerate:\n"
        "#   .venv/bin/python tests/deploy/test_deploy_prometheus.py --write\n"
    )
    return head + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=100)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- metric names the code exports ---------------------------------------------------------


def exported_metrics() -> dict[str, tuple[str, ...]]:
    """Every sample name the service and the monitor export -> its label names, read from a
    real /metrics scrape of an in-process service app (after one prediction) and from the
    monitor's MonitorMetrics, plus the label names each metric object declares."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from modelloop.monitoring.metrics import MonitorMetrics
    from modelloop.service.metrics import ServiceMetrics

    texts: list[str] = [scrape_service_app()]
    monitor_registry = CollectorRegistry()
    MonitorMetrics(monitor_registry)
    texts.append(generate_latest(monitor_registry).decode())

    labels: dict[str, tuple[str, ...]] = {}
    for cls in (ServiceMetrics, MonitorMetrics):
        obj = cls(CollectorRegistry())
        for metric in vars(obj).values():
            name = getattr(metric, "_name", None)
            if name:
                labels[name] = tuple(getattr(metric, "_labelnames", ()))
    out: dict[str, tuple[str, ...]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            base = labels.get(fam.name, ())
            if fam.type == "counter":
                names = [f"{fam.name}_total"]
            elif fam.type == "histogram":
                names = [f"{fam.name}_bucket", f"{fam.name}_sum", f"{fam.name}_count"]
            else:
                names = [fam.name]
            for n in names:
                out[n] = (*base, "le") if n.endswith("_bucket") else base
    return out


def scrape_service_app() -> str:
    """GET /metrics of a real service app (in process, on a throwaway home) after a prediction
    to a model that does not exist (so request counters have samples too)."""
    import tempfile
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from modelloop.service.app import create_app
    from modelloop.service.settings import ServiceSettings

    with tempfile.TemporaryDirectory() as home:
        app = create_app(ServiceSettings(home=Path(home), grpc_port=0))
        with TestClient(app) as client:
            client.post("/v1/models/nosuch/predict", json={"instances": [{"a": 1}]})
            r = client.get("/metrics")
            assert r.status_code == 200
            return r.text
