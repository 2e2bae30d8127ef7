"""Serving stays free of the training and monitoring dependencies (DESIGN.md, packages)."""

import json
import subprocess
import sys
from pathlib import Path

from service_helpers import MODEL, copy_home, row

HEAVY = ("sklearn", "scipy", "skl2onnx", "pandas")

# The serving image installs neither pandas nor the training stack: the probe runs as there,
# with pandas not importable (pyarrow, the log's encoder, imports pandas on its first array
# wherever pandas is installed, and works without it). What it then loads is what the image
# needs; a prediction that fails without pandas fails the test.
PROGRAM = """
import json, sys, warnings
from pathlib import Path

sys.modules["pandas"] = None  # not installed, as in the serving image

from modelloop.service.app import create_app
from modelloop.service.settings import ServiceSettings

app = create_app(ServiceSettings(home=Path(sys.argv[1])))
after_create = sorted(
    m for m in sys.modules if m.split(".")[0] in {heavy} and sys.modules[m] is not None
)

# Run the app too: start-up loads and smoke-tests the model, then one prediction.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
with TestClient(app) as client:
    r = client.post("/v1/models/{model}/predict", json={{"instances": [json.loads(sys.argv[2])]}})
    status = r.status_code
after_predict = sorted(
    m for m in sys.modules if m.split(".")[0] in {heavy} and sys.modules[m] is not None
)
print(json.dumps({{"create": after_create, "predict": after_predict, "status": status}}))
"""


def test_the_service_imports_no_training_dependencies(template_home: Path, tmp_path: Path) -> None:
    home = copy_home(template_home, tmp_path / "home")
    code = PROGRAM.format(heavy=set(HEAVY), model=MODEL)
    done = subprocess.run(
        [sys.executable, "-c", code, str(home), json.dumps(row(1))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == 200
    assert out["create"] == [], out
    assert out["predict"] == [], out


def test_the_check_itself_sees_a_training_import(tmp_path: Path) -> None:
    """The same probe reports sklearn when something does import it (the test can fail)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, modelloop.training.pipeline; print('sklearn' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
