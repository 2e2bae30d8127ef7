"""Prometheus rules and the Grafana dashboard, checked by promtool and against the code.

- `promtool check rules` and `promtool test rules` (a unit test for every alert);
- every metric, label and label value the rules and the dashboard use is one the code exports;
- the Prometheus Operator's PrometheusRule is the rule file, generated (`--write` regenerates);
- the dashboard has the panels it promises.

The live check (a real Prometheus scraping a running service and monitor) is in
test_deploy_scrape.py.
"""

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from deploy_helpers import (
    DASHBOARD,
    PROMETHEUS_RULE,
    RULE_TESTS,
    RULES,
    exported_metrics,
    prometheus_rule_text,
    rule_groups,
    run,
    tool,
)

ALERTS = {
    "ModelloopDriftDetected",
    "ModelloopLiveAccuracyLow",
    "ModelloopEstimatedAccuracyLow",
    "ModelloopRetrainFailed",
    "ModelloopRetrainStuck",
    "ModelloopModelLoadFailure",
    "ModelloopHighLatencyP99",
    "ModelloopHighErrorRate",
    "ModelloopLogQueueBackingUp",
    "ModelloopMonitorNotChecking",
}
# labels Prometheus (or the Operator) adds to every scraped series
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}
METRIC = re.compile(r"\b(modelloop_[a-z0-9_]+)\b(?:\{([^}]*)\})?")
RECORDED = re.compile(r"\b(modelloop:[a-z0-9_:]+)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def recording_rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "record" in r]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for var in board.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if var.get("type") == "query" and q:
            exprs.append(q)
    return exprs


def test_promtool_check_rules() -> None:
    out = run([tool("promtool"), "check", "rules", str(RULES)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = run([tool("promtool"), "test", "rules", str(RULE_TESTS)], cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_there_and_unit_tested_firing_and_quiet() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert names == ALERTS
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for t in case.get("alert_rule_test", []):
            (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
    assert names <= fires, f"alerts never seen firing in a unit test: {names - fires}"
    assert names <= quiet, f"alerts never seen staying quiet in a unit test: {names - quiet}"
    for r in alert_rules():
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        assert r["annotations"]["description"], r["alert"]


def test_every_recording_rule_is_unit_tested_or_used_by_an_alert() -> None:
    tested = RULE_TESTS.read_text()
    alerts = " ".join(r["expr"] for r in alert_rules())
    for r in recording_rules():
        assert r["record"] in tested or r["record"] in alerts, r["record"]


def _check_selectors(expr: str, exported: dict[str, tuple[str, ...]], where: str) -> None:
    from modelloop.monitoring.rules import STATES

    for name, matchers in METRIC.findall(expr):
        assert name in exported, f"{where}: {name} is not exported by the code"
        for label, op, value in MATCHER.findall(matchers or ""):
            known = set(exported[name]) | TARGET_LABELS
            assert label in known, f"{where}: {name} has no label {label!r} ({sorted(known)})"
            if label == "state" and op == "=":
                assert value in STATES, f"{where}: state {value!r} not in {STATES}"
            if label == "metric" and op == "=":
                assert value in {"accuracy", "f1_macro", "mae", "rmse"}, f"{where}: {value}"


def test_rules_and_dashboard_use_only_metrics_the_code_exports() -> None:
    exported = exported_metrics()
    # sanity: the scrape really was read
    assert "modelloop_requests_total" in exported
    assert "modelloop_drift_score" in exported
    records = {r["record"] for r in recording_rules()}
    used: set[str] = set()
    for r in [*recording_rules(), *alert_rules()]:
        where = r.get("record") or r.get("alert")
        _check_selectors(r["expr"], exported, where)
        used |= {n for n, _ in METRIC.findall(r["expr"])}
        for rec, _ in RECORDED.findall(r["expr"]):
            assert rec in records, f"{where}: uses {rec}, which no rule records"
    for expr in dashboard_exprs():
        _check_selectors(expr, exported, f"dashboard: {expr}")
        used |= {n for n, _ in METRIC.findall(expr)}
        for rec, _ in RECORDED.findall(expr):
            assert rec in records, f"dashboard uses {rec}, which no rule records"
    # the endpoint label values the code uses
    for expr in [*(r["expr"] for r in alert_rules()), *dashboard_exprs()]:
        for label, _, value in MATCHER.findall(expr):
            if label == "endpoint":
                for v in value.split("|"):
                    assert v.rstrip(".*") in {"predict", "predict_version", "infer"}, value
    assert len(used) >= 15


def test_prometheus_rule_is_generated_from_the_rule_file() -> None:
    assert PROMETHEUS_RULE.read_text() == prometheus_rule_text(), (
        "k8s/components/prometheus-operator/prometheusrule.yaml is stale: "
        "run .venv/bin/python tests/deploy/test_deploy_prometheus.py --write"
    )


def test_dashboard_has_the_promised_panels() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"]
    assert board["title"]
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for words in (
        "request rate",
        "error",
        "latency",
        "batch",
        "active version",
        "drift",
        "live accuracy",
        "retrain",
    ):
        assert words in titles, f"no panel about {words!r}: {titles}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        if p["type"] == "row":
            continue
        assert p.get("targets"), p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
    exprs = " ".join(dashboard_exprs())
    assert "histogram_quantile" in exprs or "quantile_rate5m" in exprs
    assert "$model" in exprs


if __name__ == "__main__":
    if "--write" in sys.argv:
        PROMETHEUS_RULE.write_text(prometheus_rule_text())
        print(f"wrote {PROMETHEUS_RULE}")
