#!/usr/bin/env bash
# Idempotent setup of the NannyML baseline venv (for bench/estimate_bench.py --nannyml).
#
#   bash bench/nannyml/setup.sh                  # create the venv at bench/.venv-nannyml
#   VENV=/tmp/nannyml-venv bash bench/nannyml/setup.sh
#   FORCE=1 bash bench/nannyml/setup.sh          # reinstall even if it looks complete
#
# NannyML 0.13 brings its own pandas/numpy/scikit-learn (and lightgbm, FLAML, plotly...), so it
# lives in a venv of its own and is never a dependency of modelloop. 0.13.1 imports statsmodels
# without declaring it and predates pandas 3: both are installed here. NannyML sends usage statistics unless
# NML_DISABLE_USAGE_LOGGING=1: the bench's runner sets it. When constraints.txt is missing (first
# setup), installs the latest nannyml 0.13.x and writes constraints.txt from pip freeze.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="$(dirname "$HERE")"
VENV="${VENV:-$BENCH/.venv-nannyml}"
PY="${PYTHON:-python3.11}"
CONSTRAINTS="$HERE/constraints.txt"
export NML_DISABLE_USAGE_LOGGING=1

command -v "$PY" >/dev/null || { echo "error: $PY not found" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
VPIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if [ -f "$CONSTRAINTS" ]; then
  if [ "${FORCE:-0}" != 1 ] && "$VENV/bin/python" -c "import nannyml" 2>/dev/null; then
    echo "$VENV already has nannyml"
  else
    "${VPIP[@]}" install -q -r "$CONSTRAINTS"
  fi
else
  # nannyml 0.13.1 imports statsmodels without declaring it, and was released before pandas 3
  "${VPIP[@]}" install -q "nannyml>=0.13,<0.14" "pandas<3" statsmodels
  {
    echo "# pip freeze of the nannyml venv (written by setup.sh; delete to re-resolve)"
    "${VPIP[@]}" freeze --exclude-editable | grep -v '^-e '
  } > "$CONSTRAINTS"
  echo "wrote $CONSTRAINTS"
fi

"$VENV/bin/python" -c "import nannyml, pandas, sklearn; print('nannyml', nannyml.__version__, 'pandas', pandas.__version__, 'scikit-learn', sklearn.__version__)"
