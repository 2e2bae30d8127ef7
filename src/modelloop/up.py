"""`modelloop up`: the whole loop on one machine, each component in its own process.

Trains the default model first when the registry is empty, starts the components, prints how
to call the service once it is ready, and stops them all on Ctrl-C or SIGTERM. With no admin
token configured it makes one on the first run and keeps it in `$MODELLOOP_HOME/admin-token`
(mode 0600), as notebook servers do, so the admin API works from the first minute.
"""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from modelloop.cli_output import fail, progress
from modelloop.service.settings import MIN_TOKEN
from modelloop.store.registry import Registry, open_registry
from modelloop.store.settings import StoreSettings

COMPONENTS = ("serve", "monitor", "trainer")
TOKEN_FILE = "admin-token"


def first_run_token(home: Path) -> tuple[str, Path]:
    """The admin token kept in `home`, made (random, mode 0600) if there is none yet."""
    path = home / TOKEN_FILE
    home.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if len(token) >= MIN_TOKEN:  # what the service accepts
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                progress(f"{path} was readable by others: now mode 0600")
            return token, path
        path.unlink()  # empty or cut short: make a new one
    token = secrets.token_urlsafe(32)  # 43 characters
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path


def _admin_env(home: Path) -> tuple[dict[str, str], str]:
    """The admin token for the service: an explicit MODELLOOP_ADMIN_TOKEN (or `off`) wins;
    unset, the first-run token. Returns the variables to set and a line for the user."""
    given = os.environ.get("MODELLOOP_ADMIN_TOKEN")
    if given is not None:
        if given.strip().lower() == "off":
            return {"MODELLOOP_ADMIN_TOKEN": "off"}, "admin API off (MODELLOOP_ADMIN_TOKEN=off)"
        return {}, "admin API on with the token in MODELLOOP_ADMIN_TOKEN"
    token, path = first_run_token(home)
    return {"MODELLOOP_ADMIN_TOKEN": token}, f"admin token (kept in {path}): {token}"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _example_model(registry: Registry) -> str | None:
    names = registry.models()
    if not names:
        return None
    return "default" if "default" in names else names[0]


def _example(host: str, port: int, registry: Registry) -> str:
    model = _example_model(registry)
    if model is None:
        return ""
    active = registry.active(model)
    if active is None:
        return ""
    meta = registry.metadata(model, active)
    row = {}
    for f in meta.features:
        row[f.name] = (f.categories[0] if f.categories else "") if f.kind == "categorical" else 1.0
    body = json.dumps({"instances": [row]})
    return (
        f"curl -s http://{host}:{port}/v1/models/{model}/predict "
        f"-H 'content-type: application/json' -d '{body}'"
    )


def up(
    host: str,
    port: int,
    components: Sequence[str] = COMPONENTS,
    grpc_port: int | None = None,
) -> int:
    settings = StoreSettings()
    registry = open_registry(settings.registry_location)
    if not registry.models():
        progress(f"registry {registry.location} is empty: training the default model first")
        # in its own process: the training libraries stay out of this supervisor
        code = subprocess.run([sys.executable, "-m", "modelloop.cli", "train"]).returncode
        if code != 0:
            return code
    admin, admin_line = _admin_env(settings.home)
    env = {
        "MODELLOOP_MONITOR_HOST": host,
        "MODELLOOP_MONITOR_PORT": str(port + 1),
        # The monitor applies retention: the service need not (unless told to).
        **({"MODELLOOP_SERVICE_RETENTION": "false"} if "monitor" in components else {}),
        **os.environ,
        **admin,
        "MODELLOOP_HOST": host,
        "MODELLOOP_PORT": str(port),
    }
    if grpc_port is not None:
        env["MODELLOOP_GRPC_PORT"] = str(grpc_port)
    grpc_shown = env.get("MODELLOOP_GRPC_PORT", "8081")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in components:
        procs[name] = subprocess.Popen([sys.executable, "-m", "modelloop.cli", name], env=env)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    shown = False
    code = 0
    while not stopping:
        for name, p in procs.items():
            if p.poll() is not None:
                progress(f"{name} exited with code {p.returncode}; stopping the others")
                stopping, code = True, p.returncode or 1
        if not shown and _ready(f"http://{host}:{port}/v2/health/ready"):
            shown = True
            progress(f"\nmodelloop is up: http://{host}:{port}  (API docs: /docs)")
            if grpc_shown != "0":
                progress(f"OIP gRPC (inference.GRPCInferenceService): {host}:{grpc_shown}")
            progress(admin_line)
            example = _example(host, port, registry)
            if example:
                progress(f"try:\n  {example}")
            model = _example_model(registry)
            if admin.get("MODELLOOP_ADMIN_TOKEN", "off") != "off" and model is not None:
                progress(
                    f"  curl -s -X POST http://{host}:{port}/v1/admin/models/{model}/retrain "
                    f'-H "Authorization: Bearer $(cat {(settings.home / TOKEN_FILE).resolve()})"'
                )
            progress("")
        time.sleep(0.2)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return code


def up_command(host: str | None, port: int | None, grpc_port: int | None = None) -> int:
    if port is not None and not 0 < port < 65536:
        return fail("--port must be between 1 and 65535")
    if grpc_port is not None and not 0 <= grpc_port < 65536:
        return fail("--grpc-port must be between 0 (off) and 65535")
    return up(
        host or os.environ.get("MODELLOOP_HOST", "127.0.0.1"),
        port or int(os.environ.get("MODELLOOP_PORT", "8000")),
        grpc_port=grpc_port,
    )
