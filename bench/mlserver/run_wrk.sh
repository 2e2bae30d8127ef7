#!/usr/bin/env bash
# Start MLServer on MODEL_DIR pinned to core 0, check one request with curl,
# run wrk pinned to core 1 against it, then stop the server.
#
#   bench/mlserver/run_wrk.sh MODEL_DIR [serve.py options...]
#
# Env: PORT (8081), CONNS (8), DURATION (5s), THREADS (1), BODY (request.json
# next to this script), SERVER_CPU (0), CLIENT_CPU (1).
# Loopback only: the server listens on 127.0.0.1 and wrk targets 127.0.0.1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL_DIR="${1:?usage: run_wrk.sh MODEL_DIR [serve.py options...]}"
shift
PORT="${PORT:-8081}"
CONNS="${CONNS:-8}"
DURATION="${DURATION:-5s}"
THREADS="${THREADS:-1}"
BODY="${BODY:-$HERE/request.json}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
URL="http://127.0.0.1:${PORT}/v2/models/default/infer"
LOG="${MODEL_DIR%/}/mlserver.log"

command -v wrk >/dev/null || { echo "wrk missing: apt-get update && apt-get install -y wrk" >&2; exit 1; }

taskset -c "$SERVER_CPU" python3 "$HERE/serve.py" "$MODEL_DIR" --port "$PORT" "$@" >"$LOG" 2>&1 &
SERVER_PID=$!
stop_server() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT

for _ in $(seq 120); do
  if curl -sf "http://127.0.0.1:${PORT}/v2/models/default/ready" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died, log:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.25
done
curl -sf "http://127.0.0.1:${PORT}/v2/models/default/ready" >/dev/null || { echo "server not ready" >&2; cat "$LOG" >&2; exit 1; }

echo "== server: $(head -1 "$LOG")"
echo "== curl:"
curl -s -w '\nHTTP %{http_code}\n' -H 'Content-Type: application/json' -d @"$BODY" "$URL"
# short warm-up, then the measured run
BODY="$BODY" taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d1s -s "$HERE/post.lua" "$URL" >/dev/null
echo "== wrk -t$THREADS -c$CONNS -d$DURATION (client on cpu $CLIENT_CPU, server on cpu $SERVER_CPU):"
BODY="$BODY" taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/post.lua" "$URL"
