"""`modelloop up`: the whole loop on one machine, each component in its own process.

Trains the default model first when the registry is empty, starts the components, prints how
to call the service once it is ready, and stops them all on Ctrl-C or SIGTERM.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from modelloop.cli_output import fail, progress
from modelloop.store.registry import Registry, open_registry
from modelloop.store.settings import StoreSettings

COMPONENTS = ("serve", "monitor", "trainer")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _example(host: str, port: int, registry: Registry) -> str:
    names = registry.models()
    if not names:
        return ""
    model = "default" if "default" in names else names[0]
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


def up(host: str, port: int, components: Sequence[str] = COMPONENTS) -> int:
    settings = StoreSettings()
    registry = open_registry(settings.registry_location)
    if not registry.models():
        progress(f"registry {registry.location} is empty: training the default model first")
        from modelloop.cli import main as cli_main

        code = cli_main(["train"])
        if code != 0:
            return code
    env = {
        "MODELLOOP_MONITOR_HOST": host,
        "MODELLOOP_MONITOR_PORT": str(port + 1),
        **os.environ,
        "MODELLOOP_HOST": host,
        "MODELLOOP_PORT": str(port),
    }
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
            example = _example(host, port, registry)
            if example:
                progress(f"try:\n  {example}\n")
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


def up_command(host: str | None, port: int | None) -> int:
    if port is not None and not 0 < port < 65536:
        return fail("--port must be between 1 and 65535")
    return up(
        host or os.environ.get("MODELLOOP_HOST", "127.0.0.1"),
        port or int(os.environ.get("MODELLOOP_PORT", "8000")),
    )
