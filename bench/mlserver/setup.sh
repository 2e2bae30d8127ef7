#!/usr/bin/env bash
# Idempotent setup of the MLServer 1.7.1 baseline venv at bench/.venv-mlserver.
#
#   bash bench/mlserver/setup.sh            # create/refresh the venv
#   FORCE=1 bash bench/mlserver/setup.sh    # reinstall even if it looks complete
#
# Installs exactly the versions in bench/mlserver/constraints.txt (a pip freeze
# of a working venv): mlserver==1.7.1, mlserver-sklearn==1.7.1, uvloop<0.22
# (MLServer 1.7.1 does not start with uvloop>=0.22, upstream issue 2286) and a
# scikit-learn equal to the project's, so a model.joblib dumped by the project
# venv (/work/main/.venv) unpickles here.  If the project venv exists and has a
# different scikit-learn/numpy/scipy/pandas/joblib than constraints.txt, the
# project's versions win (a warning is printed); if that combination cannot be
# installed, train the model with this venv's python instead
# (bench/.venv-mlserver/bin/python bench/mlserver/train_example.py DIR).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="$(dirname "$HERE")"
ROOT="$(dirname "$BENCH")"
VENV="$BENCH/.venv-mlserver"
PY="${PYTHON:-python3.11}"
PROJECT_VENV="${PROJECT_VENV:-$ROOT/.venv}"
CONSTRAINTS="$HERE/constraints.txt"
# Packages whose versions must match the project venv for pickles to load.
SHARED_PKGS="scikit-learn numpy scipy pandas joblib"

command -v "$PY" >/dev/null || { echo "error: $PY not found" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
VPIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# Build the effective constraints: constraints.txt with the shared packages
# replaced by the project venv's versions (if the project venv is there).
EFFECTIVE="$(mktemp)"
trap 'rm -f "$EFFECTIVE"' EXIT
cp "$CONSTRAINTS" "$EFFECTIVE"
if [ -x "$PROJECT_VENV/bin/python" ]; then
  for pkg in $SHARED_PKGS; do
    want="$("$PROJECT_VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null || true)"
    [ -n "$want" ] || continue
    have="$(grep -iE "^${pkg}==" "$CONSTRAINTS" | head -1 | cut -d= -f3 || true)"
    if [ "$want" != "$have" ]; then
      echo "warning: project venv has $pkg==$want, constraints.txt pins ${have:-nothing}; using $want" >&2
      grep -viE "^${pkg}==" "$EFFECTIVE" > "$EFFECTIVE.new" || true
      echo "$pkg==$want" >> "$EFFECTIVE.new"
      mv "$EFFECTIVE.new" "$EFFECTIVE"
    fi
  done
fi

# Skip pip when the venv already matches the effective constraints.
if [ "${FORCE:-0}" != 1 ] && "$VENV/bin/python" - "$EFFECTIVE" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, ver = line.split("==")
    if m.version(name) != ver:
        sys.exit(1)
EOF
then
  echo "$VENV already up to date"
else
  "${VPIP[@]}" install -q -c "$EFFECTIVE" \
    "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22" \
    scikit-learn numpy scipy pandas joblib
fi

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
print("bench/.venv-mlserver:", ", ".join(
    f"{p}=={m.version(p)}" for p in
    ["mlserver", "mlserver-sklearn", "uvloop", "scikit-learn", "numpy", "pandas", "joblib"]))
EOF
"$VENV/bin/mlserver" --help >/dev/null
