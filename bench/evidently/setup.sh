#!/usr/bin/env bash
# Idempotent setup of the Evidently baseline venv at bench/.venv-evidently.
#
#   bash bench/evidently/setup.sh            # create the venv, or check it is up to date
#   FORCE=1 bash bench/evidently/setup.sh    # reinstall even if it looks complete
#
# Installs exactly the versions in bench/evidently/constraints.txt (a pip freeze of a venv
# that ran bench/evidently/run_evidently.py). Evidently 0.7 needs pandas<3 to import; set
# DO_NOT_TRACK=1 when running it (it sends telemetry otherwise): run_evidently.py does.
# When constraints.txt is missing (first setup), installs the latest evidently 0.7.x with
# pandas<3 and writes constraints.txt from pip freeze.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="$(dirname "$HERE")"
VENV="$BENCH/.venv-evidently"
PY="${PYTHON:-python3.11}"
CONSTRAINTS="$HERE/constraints.txt"
export DO_NOT_TRACK=1

command -v "$PY" >/dev/null || { echo "error: $PY not found" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
VPIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if [ -f "$CONSTRAINTS" ]; then
  if [ "${FORCE:-0}" != 1 ] && "$VENV/bin/python" - "$CONSTRAINTS" <<'PYEOF' 2>/dev/null
import importlib.metadata as m, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, ver = line.split("==")
    if m.version(name) != ver:
        sys.exit(1)
PYEOF
  then
    echo "$VENV already up to date"
  else
    "${VPIP[@]}" install -q -r "$CONSTRAINTS"
  fi
else
  "${VPIP[@]}" install -q "evidently>=0.7,<0.8" "pandas<3"
  {
    echo "# pip freeze of bench/.venv-evidently (written by setup.sh; delete to re-resolve)"
    "${VPIP[@]}" freeze --exclude-editable | grep -v '^-e '
  } > "$CONSTRAINTS"
  echo "wrote $CONSTRAINTS"
fi

"$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as m
print("bench/.venv-evidently:", ", ".join(
    f"{p}=={m.version(p)}" for p in ["evidently", "pandas", "numpy", "scipy"]))
from evidently import Report  # noqa: F401  (fails here if pandas>=3 slipped in)
from evidently.presets import DataDriftPreset  # noqa: F401
PYEOF
