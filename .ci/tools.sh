#!/usr/bin/env bash
# Installs the system tools that tests use (as root, when missing) and starts PostgreSQL.
set -euo pipefail
need=()
# prometheus, buildah, debootstrap, kubectl: tests/deploy (live scrape, image build, kustomize).
for tool in promtool:prometheus chromium:chromium wrk:wrk prometheus:prometheus buildah:buildah debootstrap:debootstrap kubectl:kubectl; do
  cmd=${tool%%:*}; pkg=${tool##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing tools (run as root to install): ${need[*]}" >&2
  fi
fi
# checkov (tests/deploy) pins packaging<24, which pytest (packaging>=24) in .venv cannot share:
# it gets a venv of its own, where tests/deploy/deploy_helpers.py looks for it.
CHECKOV_VENV=${MODELLOOP_CHECKOV_VENV:-/opt/modelloop-ci/checkov}
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing checkov into $CHECKOV_VENV" >&2
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q 'checkov>=3.2,<4' >/dev/null
  else
    echo "missing tools (run as root to install): checkov" >&2
  fi
fi
# kserve (tests/service/test_svc_grpc_kserve.py: KServe's own gRPC client) pins fastapi, numpy
# and protobuf against ours: a venv of its own too.
if [ "$(id -u)" = 0 ]; then
  bash tests/service/kserve/setup.sh
elif [ ! -x "${MODELLOOP_KSERVE_VENV:-/opt/modelloop-ci/kserve}/bin/python" ]; then
  echo "missing tools (run as root to install): kserve venv (tests/service/kserve/setup.sh)" >&2
fi
# PostgreSQL on 127.0.0.1:5432 for the PostgreSQL backend's tests.
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi
