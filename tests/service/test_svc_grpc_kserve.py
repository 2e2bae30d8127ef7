"""KServe's own gRPC client (`kserve.InferenceGRPCClient`, the PyPI package, unchanged) against
a real `modelloop serve`. kserve pins fastapi, numpy and protobuf against ours, so it runs from
a venv of its own (`tests/service/kserve/setup.sh`; CI makes it in .ci/tools.sh)."""

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from service_helpers import MODEL, predictions_in_db, row, running_server

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MODELLOOP_KSERVE_VENV", "/opt/modelloop-ci/kserve"))


def test_kserve_grpc_client_predicts_and_is_logged(home: Path) -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no kserve venv at {VENV} (bash tests/service/kserve/setup.sh)")
    rows = [row(i) for i in range(3)]
    with running_server(home, {"MODELLOOP_LOG_FLUSH_SECONDS": "0.05"}) as server:
        done = subprocess.run(
            [str(python), str(HERE / "kserve" / "client.py"), server.grpc_target, MODEL],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        got = json.loads(done.stdout)
        v1 = httpx.post(f"{server.url}/v1/models/{MODEL}/predict", json={"instances": rows})
        assert v1.status_code == 200, v1.text
    assert got["live"] is True
    assert got["ready"] is True
    assert got["model_ready"] is True
    assert got["unknown_ready"] is False
    assert got["model_name"] == MODEL
    assert got["id"] == "kserve-1"
    labels = [p["label"] for p in v1.json()["predictions"]]
    assert got["outputs"]["label"] == labels
    logged = {p["id"] for p in predictions_in_db(home)}
    assert {f"kserve-1:{i}" for i in range(3)} <= logged
