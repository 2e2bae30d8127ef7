"""Docker build step: the virtualenv /opt/modelloop with modelloop's dependencies for the given
extras (from pyproject.toml, pinned by constraints.txt), but not modelloop itself, which the
image adds last in /opt/modelloop/app (a .pth file puts it on the path) so that a change to
the code rebuilds one small layer only. Also the `modelloop` command and the data directory.

    python3 make_venv.py serve            # the serve image: no scikit-learn, no scipy
    python3 make_venv.py train monitor    # the worker image
"""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

VENV = Path("/opt/modelloop")
APP = VENV / "app"
DATA = Path("/out/data")
UID = 10001


def main(extras: list[str]) -> None:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir"]
    subprocess.run([*pip, "-c", "constraints.txt", *requirements], check=True)
    purelib = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "modelloop-app.pth").write_text(f"{APP}\n")
    script = VENV / "bin" / "modelloop"
    script.write_text(
        f"#!{VENV}/bin/python\nimport sys\n\nfrom modelloop.cli import main\n\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    DATA.mkdir(parents=True)
    os.chown(DATA, UID, UID)
    DATA.chmod(0o750)


if __name__ == "__main__":
    main(sys.argv[1:])
