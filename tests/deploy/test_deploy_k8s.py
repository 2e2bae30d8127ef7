"""The Dockerfile and the Kubernetes manifests, checked by the real tools and against the code.

- hadolint on the Dockerfile; checkov on the Dockerfile and on every rendered overlay, with
  exactly the skips in deploy/checkov-skips.yaml (each justified there, none stale);
- `kubectl kustomize` renders every overlay; `kubernetes-validate --strict` passes on it for
  the newest and the oldest Kubernetes it is meant for;
- every MODELLOOP_* variable the manifests set is a field of a settings class and parses
  there; ports, probe paths, the data path and the container commands exist in the code;
- the shape the issue asks for: replicas, HPA, PDB, anti-affinity, PostgreSQL from a Secret,
  securityContext, drain timing, NetworkPolicy, ServiceMonitor.
"""

import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from deploy_helpers import (
    OVERLAYS,
    ROOT,
    by_kind,
    documents,
    free_port,
    pod_specs,
    rendered,
    run,
    tool,
)

DOCKERFILE = ROOT / "Dockerfile"
SKIPS = ROOT / "deploy" / "checkov-skips.yaml"
# kubernetes-validate ships schemas up to its own version; the oldest one we promise to run on
K8S_VERSIONS = ("1.30.0", None)  # None: the newest it knows
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
DATA = "/var/lib/modelloop"


AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"}


def settings_classes() -> dict[str, Any]:
    from modelloop.monitoring.settings import MonitorSettings
    from modelloop.service.settings import ServiceSettings
    from modelloop.training.worker import TrainerSettings

    return {"serve": ServiceSettings, "monitor": MonitorSettings, "trainer": TrainerSettings}


def env_var_names(cls: Any) -> set[str]:
    prefix = cls.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def config_map(overlay: str) -> dict[str, str]:
    (cm,) = [
        c
        for c in by_kind(overlay, "ConfigMap")
        if c["metadata"]["name"].startswith("modelloop-config")
    ]
    return dict(cm["data"])


def containers(overlay: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for spec in pod_specs(overlay).values() for c in spec["containers"]}


# -- Dockerfile ------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    out = run([tool("hadolint"), str(DOCKERFILE)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines()]
    first_from = next(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    assert any(ln.startswith("ARG BASE") for ln in lines[:first_from]), "ARG BASE before FROM"
    stages: dict[str, list[str]] = {}
    current = None
    for ln in lines:
        if m := re.match(r"FROM \$\{BASE\} AS (\S+)$", ln):
            current = m.group(1)
            stages[current] = []
        elif ln.startswith("FROM "):
            raise AssertionError(f"every stage builds on ARG BASE: {ln}")
        elif current and ln and not ln.startswith("#"):
            stages[current].append(ln)
    assert {"serve", "worker"} <= set(stages), stages.keys()
    for target, cmd in (("serve", "serve"), ("worker", "monitor")):
        body = stages[target]
        user = [ln.split()[1] for ln in body if ln.startswith("USER ")]
        assert user, f"{target}: no USER"
        assert not user[-1].startswith(("0", "root")), f"{target}: USER {user}"
        assert re.fullmatch(r"\d+:\d+", user[-1]), "numeric uid:gid, so runAsNonRoot can check"
        (entry,) = [ln for ln in body if ln.startswith("ENTRYPOINT")]
        assert json.loads(entry.split(None, 1)[1]) == ["modelloop"], "exec form"
        (command,) = [ln for ln in body if ln.startswith("CMD")]
        assert json.loads(command.split(None, 1)[1]) == [cmd]
        assert any(ln.startswith("HEALTHCHECK") and "CMD [" in ln for ln in body)
        assert f"MODELLOOP_HOME={DATA}" in " ".join(body)
        assert any(ln.startswith("VOLUME") and DATA in ln for ln in body)
    # the serve image's virtualenv has the serve extra only; the worker's train + monitor
    extras = {
        stage: next(ln.split("make_venv.py", 1)[1].split() for ln in body if ln.startswith("RUN"))
        for stage, body in stages.items()
        if stage.startswith("deps-")
    }
    assert extras == {"deps-serve": ["serve"], "deps-worker": ["train", "monitor"]}
    for target in ("serve", "worker"):
        sources = {m for ln in stages[target] for m in re.findall(r"--from=(\S+)", ln)}
        assert sources == {f"deps-{target}", "app"}, (target, sources)


def _checkov(args: list[str], tmp_path: Path, skip: list[str]) -> tuple[int, list[dict[str, Any]]]:
    cmd = [tool("checkov"), *args, "--output", "json", "--compact", "--skip-download"]
    if skip:
        cmd += ["--skip-check", ",".join(skip)]
    out = run(
        cmd,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "BC_SKIP_MAPPING": "TRUE",
            "LOG_LEVEL": "ERROR",
        },
    )
    try:
        reports = json.loads(out.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(
            f"checkov gave no JSON ({out.returncode}):\n{out.stderr[-3000:]}"
        ) from e
    return out.returncode, reports if isinstance(reports, list) else [reports]


def _findings(reports: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (c["check_id"], f"{c['resource']} ({rep['check_type']})")
        for rep in reports
        for c in rep.get("results", {}).get("failed_checks", [])
    ]


def test_checkov_passes_with_only_the_justified_skips(tmp_path: Path) -> None:
    skips = yaml.safe_load(SKIPS.read_text())["skips"]
    ids = [s["id"] for s in skips]
    for s in skips:
        assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", s["id"]), s
        assert len(s["reason"].split()) >= 15, f"{s['id']}: say why"
    files = []
    for overlay in OVERLAYS:
        f = tmp_path / f"{overlay}.yaml"
        f.write_text(rendered(overlay))
        files += ["-f", str(f)]
    args = ["-f", str(DOCKERFILE), *files, "--framework", "dockerfile", "kubernetes"]
    # with the skips: checkov passes
    code, reports = _checkov(args, tmp_path, ids)
    assert {r["check_type"] for r in reports} == {"dockerfile", "kubernetes"}
    assert sum(r["summary"]["passed"] for r in reports) > 300
    assert sum(r["summary"]["resource_count"] for r in reports) >= 30
    assert not _findings(reports), "checkov findings:\n" + "\n".join(map(str, _findings(reports)))
    assert code == 0
    # without them: it fails on exactly those checks (no stale skip hides nothing)
    _, reports = _checkov(args, tmp_path, [])
    found = {check for check, _ in _findings(reports)}
    assert found == set(ids), f"stale skips: {set(ids) - found}; unjustified: {found - set(ids)}"


# -- kustomize and schemas -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_renders(overlay: str) -> None:
    kinds = {d["kind"] for d in documents(overlay)}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "NetworkPolicy",
        "ServiceAccount",
        "Namespace",
    } <= kinds
    # dev shares a volume on one node; prod shares nothing but a bucket and PostgreSQL
    assert ("PersistentVolumeClaim" in kinds) == (overlay == "dev")
    names = {d["metadata"]["name"] for d in by_kind(overlay, "Deployment")}
    assert names == {"modelloop-serve", "modelloop-monitor", "modelloop-trainer"}
    ns = {d["metadata"].get("namespace") for d in documents(overlay) if d["kind"] != "Namespace"}
    assert len(ns) == 1, ns
    assert None not in ns, ns


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "newest")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_validate_strict(overlay: str, version: str | None, tmp_path: Path) -> None:
    f = tmp_path / f"{overlay}.yaml"
    f.write_text(rendered(overlay))
    cmd = [tool("kubernetes-validate"), "--strict", str(f)]
    if version:
        cmd[1:1] = ["--kubernetes-version", version]
    out = run(cmd, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    passed = re.findall(r"passed for resource (\S+)", text)
    crds = {d["kind"] for d in documents(overlay)} & CRD_KINDS
    assert len(passed) == len(documents(overlay)) - len(crds), text
    # the only resources without a schema are the Prometheus Operator's (checked below)
    for line in text.splitlines():
        if line.startswith("WARN"):
            assert re.search(
                r"kind (ServiceMonitor|PrometheusRule) with api version "
                r"monitoring.coreos.com/v1",
                line,
            ), line


# -- the manifests against the code ----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_vars_are_settings_of_the_code_and_parse(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    classes = settings_classes()
    known = set().union(*(env_var_names(c) for c in classes.values()))
    cm = config_map(overlay)
    set_vars: dict[str, str] = dict(cm)
    for name, c in containers(overlay).items():
        for e in c.get("env", []):
            # the standard AWS variables (the bucket's credentials) are read by the S3 client
            aws = e["name"] in AWS_VARIABLES and overlay == "prod"
            assert e["name"] in known or aws, f"{overlay}/{name}: {e['name']} is no setting"
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            assert ref, e
            assert ref["name"] == "modelloop-secrets", e
        for src in c.get("envFrom", []):
            assert (
                src["configMapRef"]["name"] == by_kind(overlay, "ConfigMap")[0]["metadata"]["name"]
            )
    unknown = {k for k in set_vars if k not in known}
    assert not unknown, f"{overlay}: not a field of any settings class: {unknown}"
    assert all(k.startswith("MODELLOOP_") for k in set_vars)
    # every value parses in the classes that read it (pydantic validates types and ranges)
    for k in list(__import__("os").environ):
        if k.startswith("MODELLOOP_"):
            monkeypatch.delenv(k)
    for k, v in set_vars.items():
        monkeypatch.setenv(k, v)
    for cls in classes.values():
        s = cls()
        assert str(s.home) == DATA
        assert s.database_url is None  # from the Secret in prod; SQLite in dev


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_paths_and_commands_exist_in_the_code(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelloop.cli import build_parser

    for k, v in config_map(overlay).items():
        monkeypatch.setenv(k, v)
    classes = settings_classes()
    serve, monitor = classes["serve"](), classes["monitor"]()
    assert serve.host == "0.0.0.0", "reachable in a pod"
    assert monitor.monitor_host == "0.0.0.0", "reachable in a pod"
    cs = containers(overlay)
    specs = pod_specs(overlay)
    # commands: each container's args are a command line the CLI accepts
    parser = build_parser()
    expected = {"serve": "serve", "monitor": "monitor", "trainer": "trainer", "train": "train"}
    for name, c in cs.items():
        assert "command" not in c, "keep the image's exec-form entrypoint"
        args = parser.parse_args(c["args"])
        assert args.command == expected[name], c["args"]
    # ports
    serve_ports = {p["name"]: p["containerPort"] for p in cs["serve"]["ports"]}
    assert serve_ports == {"http": serve.port, "grpc": serve.grpc_port}
    (metrics_port,) = cs["monitor"]["ports"]
    assert metrics_port["containerPort"] == monitor.monitor_port
    services = {s["metadata"]["name"]: s for s in by_kind(overlay, "Service")}
    for svc in services.values():
        target = svc["spec"]["selector"]["app.kubernetes.io/component"]
        named = {p["name"] for p in cs[target].get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in named, (svc["metadata"]["name"], p)
    # data: the volume is mounted where MODELLOOP_HOME points, /tmp is an emptyDir
    for pod, spec in specs.items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            # dev: a volume shared on one node; prod: the registry is a bucket, each pod's
            # home (its cache of versions, its spool) an emptyDir
            kind = "persistentVolumeClaim" if overlay == "dev" else "emptyDir"
            assert kind in volumes[mounts[str(serve.home)]], pod
            assert "emptyDir" in volumes[mounts["/tmp"]], pod
            assert set(mounts) == {str(serve.home), "/tmp"}, pod
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for v in volumes.values()
            if "persistentVolumeClaim" in v
        }
        assert claims == {p["metadata"]["name"] for p in by_kind(overlay, "PersistentVolumeClaim")}
    # probe paths: the service's answer on a real app; the monitor's on its real server
    probes = [
        (c, p)
        for c in cs.values()
        for k in ("livenessProbe", "readinessProbe", "startupProbe")
        if (p := c.get(k))
    ]
    serve_paths = {p["httpGet"]["path"] for c, p in probes if c["name"] == "serve"}
    monitor_paths = {p["httpGet"]["path"] for c, p in probes if c["name"] == "monitor"}
    assert serve_paths == {"/v2/health/live", "/v2/health/ready"}
    paths = serve_paths | {"/metrics"}
    assert _service_answers(paths, tmp_path) == dict.fromkeys(paths, 200)
    assert monitor_paths == {"/metrics"}
    assert _monitor_answers(monitor_paths) == dict.fromkeys(monitor_paths, 200)
    for c, p in probes:
        port = p["httpGet"]["port"]
        assert port in {q["name"] for q in c["ports"]}, (c["name"], port)


def _service_answers(paths: set[str], home: Path) -> dict[str, int]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from modelloop.service.app import create_app
    from modelloop.service.settings import ServiceSettings

    with TestClient(create_app(ServiceSettings(home=home, grpc_port=0))) as client:
        return {p: client.get(p).status_code for p in paths}


def _monitor_answers(paths: set[str]) -> dict[str, int]:
    """The monitor's /metrics server as `run_monitor` starts it (prometheus_client)."""
    from prometheus_client import CollectorRegistry

    import modelloop.monitoring.server as server_module
    from modelloop.monitoring.metrics import MonitorMetrics

    registry = CollectorRegistry()
    MonitorMetrics(registry)
    port = free_port()
    httpd, thread = server_module.start_http_server(port, "127.0.0.1", registry=registry)
    try:
        out = {}
        for p in paths:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=5) as r:
                out[p] = r.status
        return out
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    for pod, spec in pod_specs(overlay).items():
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, pod
        assert psc["runAsUser"] >= 10000, pod
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", pod
        assert spec["automountServiceAccountToken"] is False, pod
        assert spec["enableServiceLinks"] is False, (
            f"{pod}: the Service `modelloop` would inject MODELLOOP_PORT=tcp://... over the setting"
        )
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, pod
            assert sc["readOnlyRootFilesystem"] is True, pod
            assert sc["allowPrivilegeEscalation"] is False, pod
            assert sc["capabilities"]["drop"] == ["ALL"], pod
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", pod
            for k in ("cpu", "memory"):
                assert c["resources"]["requests"][k], pod
                assert c["resources"]["limits"][k], pod
    ns = by_kind(overlay, "Namespace")[0]["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_drains_within_the_grace_period(overlay: str, tmp_path: Path) -> None:
    from modelloop.service.server import build
    from modelloop.service.settings import ServiceSettings

    _, server = build(ServiceSettings(home=tmp_path))
    graceful = server.config.timeout_graceful_shutdown
    assert graceful is not None
    spec = pod_specs(overlay)["modelloop-serve"]
    (c,) = spec["containers"]
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    pre_stop = float(sleep[1])
    assert 0 < pre_stop <= 15
    # preStop, then SIGTERM: uvicorn waits up to `graceful` for in-flight requests, then the
    # log is flushed; the kubelet must not SIGKILL before that.
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + graceful + 5
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    strategy = by_kind(overlay, "Deployment")
    (serve,) = [d for d in strategy if d["metadata"]["name"] == "modelloop-serve"]
    assert serve["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_dev_is_one_of_each_on_sqlite() -> None:
    for d in by_kind("dev", "Deployment"):
        assert d["spec"]["replicas"] == 1, d["metadata"]["name"]
    assert "MODELLOOP_DATABASE_URL" not in config_map("dev")
    for c in containers("dev").values():
        assert "MODELLOOP_DATABASE_URL" not in {e["name"] for e in c.get("env", [])}
    (pvc,) = by_kind("dev", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    # SQLite (WAL) needs one node: the workers follow the service pod
    for name, spec in pod_specs("dev").items():
        if name != "modelloop-serve":
            term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term[0]["topologyKey"] == "kubernetes.io/hostname"
    assert not by_kind("dev", "HorizontalPodAutoscaler")


def test_prod_is_postgresql_replicated_autoscaled_and_spread() -> None:
    for name, c in containers("prod").items():
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env["MODELLOOP_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "modelloop-secrets", "key": "database-url"}, name
    deployments = {d["metadata"]["name"]: d for d in by_kind("prod", "Deployment")}
    serve = deployments["modelloop-serve"]
    assert serve["spec"]["replicas"] >= 2
    assert deployments["modelloop-monitor"]["spec"]["replicas"] == 1
    selector = serve["spec"]["selector"]["matchLabels"]
    (hpa,) = by_kind("prod", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "modelloop-serve"
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > 2
    (pdb,) = by_kind("prod", "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    anti = serve["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
        and t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        for t in terms
    )
    # the registry is a bucket: no volume is shared between pods
    assert by_kind("prod", "PersistentVolumeClaim") == []
    assert config_map("prod")["MODELLOOP_REGISTRY"].startswith("s3://")
    read = set()
    for c in containers("prod").values():
        for e in c.get("env", []):
            ref = e["valueFrom"]["secretKeyRef"]
            read.add(ref["key"])
            if e["name"] in AWS_VARIABLES:
                assert ref.get("optional") is True, e  # a role may stand in for keys
    # the Secret template has the keys the manifests read
    template = yaml.safe_load((ROOT / "k8s/overlays/prod/secret.example.yaml").read_text())
    assert read <= set(template["stringData"])
    assert set(template["stringData"]) == read | {"admin-token"}
    irsa = yaml.safe_load((ROOT / "k8s/overlays/prod/serviceaccount-irsa.yaml").read_text())
    assert "eks.amazonaws.com/role-arn" in irsa["metadata"]["annotations"]


def test_prod_prometheus_operator_resources() -> None:
    (sm,) = by_kind("prod", "ServiceMonitor")
    services = by_kind("prod", "Service")
    ports = {
        p["name"]
        for s in services
        for p in s["spec"]["ports"]
        if all(
            s["metadata"]["labels"].get(k) == v
            for k, v in sm["spec"]["selector"]["matchLabels"].items()
        )
    }
    # Every port that serves /metrics is scraped; the OIP gRPC port serves none.
    assert ports == {"http", "grpc", "metrics"}
    assert {e["port"] for e in sm["spec"]["endpoints"]} == ports - {"grpc"}
    assert all(e["path"] == "/metrics" for e in sm["spec"]["endpoints"])
    (rule,) = by_kind("prod", "PrometheusRule")
    from deploy_helpers import rule_groups

    assert rule["spec"]["groups"] == rule_groups()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_select_real_pods_and_ports(overlay: str) -> None:
    specs = pod_specs(overlay)
    labels = {}
    for d in documents(overlay):
        if d["kind"] in ("Deployment", "Job"):
            labels[d["metadata"]["name"]] = d["spec"]["template"]["metadata"]["labels"]
    policies = by_kind(overlay, "NetworkPolicy")
    covered = set()
    for pol in policies:
        sel = pol["spec"]["podSelector"]["matchLabels"]
        chosen = [n for n, lab in labels.items() if all(lab.get(k) == v for k, v in sel.items())]
        assert chosen, pol["metadata"]["name"]
        covered |= set(chosen)
        for rule in pol["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                for n in chosen:
                    named = {q["name"] for c in specs[n]["containers"] for q in c.get("ports", [])}
                    assert p["port"] in named, (pol["metadata"]["name"], n, p)
    assert covered == set(labels), "every pod is under a default-deny policy"
    deny = [p for p in policies if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert deny
    assert "ingress" not in deny[0]["spec"]
