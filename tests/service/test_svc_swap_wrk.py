"""20 promotions and rollbacks while wrk drives the service: zero non-2xx responses."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from service_helpers import ADMIN_TOKEN, MODEL, row, running_server

LUA = Path(__file__).resolve().parents[2] / "bench" / "bodies.lua"


def test_twenty_swaps_under_wrk_give_no_error(home: Path, tmp_path: Path) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (CI installs it: .ci/tools.sh)")
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps({"instances": [row(i)]}) for i in range(500)) + "\n")
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    env = {"MODELLOOP_ADMIN_TOKEN": ADMIN_TOKEN, "MODELLOOP_POLL_INTERVAL": "0.2"}
    with running_server(home, env) as server:
        load = subprocess.Popen(
            [
                wrk,
                "-t1",
                "-c8",
                "-d12s",
                "-s",
                str(LUA),
                server.url + f"/v1/models/{MODEL}/predict",
            ],
            env={"BODIES": str(bodies), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            text=True,
        )
        swaps = []
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as admin:
            for i in range(20):
                if i % 2 == 0:
                    r = admin.post(f"/v1/admin/models/{MODEL}/promote", json={"version": 2})
                else:
                    r = admin.post(f"/v1/admin/models/{MODEL}/rollback")
                assert r.status_code == 200, r.text
                swaps.append(r.json()["serving_version"])
        out, _ = load.communicate(timeout=60)
    assert swaps == [2, 1] * 10
    m = re.search(r"RESULT non200=(\d+) requests=(\d+)", out)
    assert m is not None, out
    assert int(m.group(2)) > 1000, out
    assert int(m.group(1)) == 0, out
    assert "Socket errors" not in out, out
