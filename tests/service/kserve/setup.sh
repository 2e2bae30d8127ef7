#!/usr/bin/env bash
# The kserve package in a venv of its own (it pins fastapi, numpy and protobuf against ours):
# tests/service/test_svc_grpc_kserve.py runs KServe's stock gRPC client from it.
set -euo pipefail
VENV=${MODELLOOP_KSERVE_VENV:-/opt/modelloop-ci/kserve}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kserve' 2>/dev/null; then
  echo "installing kserve into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'kserve==0.21.0' >/dev/null
fi
