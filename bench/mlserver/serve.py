#!/usr/bin/env python3
"""Write MLServer settings for a directory holding model.joblib and start MLServer.

Usage (any python3 works; it only writes JSON and execs the venv's `mlserver`):

    python3 bench/mlserver/serve.py MODEL_DIR [--port 8081] [--workers 0]
        [--batch-size 0 --batch-time 0] [--predict-fn predict_proba]
        [--metrics] [--debug] [--write-only]

MODEL_DIR must contain `model.joblib` (a joblib-dumped sklearn estimator or
Pipeline).  Two files are (re)written into MODEL_DIR:

* settings.json        server settings: host 127.0.0.1, HTTP port, a free gRPC
                       port (gRPC cannot be switched off in MLServer 1.7.1),
                       parallel_workers, metrics, debug/access log.
* model-settings.json  name "default", implementation
                       mlserver_sklearn.SKLearnModel, uri ./model.joblib,
                       extra.predict_fn, max_batch_size / max_batch_time.

Then `exec mlserver start MODEL_DIR` (from bench/.venv-mlserver) replaces this
process, so the PID you launched is the MLServer main process; wrap the call in
`taskset -c 0` to pin it (child processes inherit the affinity).

parallel_workers in MLServer 1.7.1 (mlserver/server.py, parallel/registry.py):
  0  -> no inference pool; the model runs inside the main (HTTP) process:
        exactly one process.  This is the default here.
  N>=1 -> N extra worker processes; the main process only does HTTP + codec
        work and forwards each request over IPC to a worker.  MLServer's own
        default is 1, i.e. 2 processes.
Adaptive batching (max_batch_size > 1 and max_batch_time > 0) is applied in the
main process in front of the model, for either mode.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("MLSERVER_VENV", os.path.join(os.path.dirname(HERE), ".venv-mlserver"))


def free_port(exclude: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("model_dir")
    ap.add_argument("--port", type=int, default=8081, help="HTTP port (default 8081)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--grpc-port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="parallel_workers: 0 = model in the HTTP process (one process, "
        "default); N>=1 = N separate inference worker processes",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="max_batch_size; >1 together with --batch-time >0 enables adaptive "
        "batching (default 0 = off)",
    )
    ap.add_argument(
        "--batch-time",
        type=float,
        default=0.0,
        help="max_batch_time in seconds, e.g. 0.005 (default 0 = off)",
    )
    ap.add_argument(
        "--predict-fn",
        default="predict_proba",
        choices=["predict", "predict_proba"],
        help="default output when the request has no 'outputs' (default predict_proba)",
    )
    ap.add_argument(
        "--metrics",
        action="store_true",
        help="keep the Prometheus metrics endpoint + middleware on (on a free port); default off",
    )
    ap.add_argument(
        "--debug",
        action="store_true",
        help="MLServer debug mode (DEBUG logging and a uvicorn access-log line "
        "per request); default off for benchmarking",
    )
    ap.add_argument("--write-only", action="store_true", help="write the JSON files and exit")
    args = ap.parse_args()

    model_dir = os.path.abspath(args.model_dir)
    model_path = os.path.join(model_dir, "model.joblib")
    if not os.path.isfile(model_path):
        sys.exit(f"error: {model_path} not found")
    if (args.batch_size > 1) != (args.batch_time > 0):
        print(
            "warning: adaptive batching needs both --batch-size > 1 and "
            "--batch-time > 0; with only one of them set MLServer does not batch",
            file=sys.stderr,
        )

    used = {args.port}
    grpc_port = args.grpc_port or free_port(used)
    used.add(grpc_port)
    metrics_port = free_port(used)

    settings = {
        "debug": args.debug,
        "host": args.host,
        "http_port": args.port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        # None disables the metrics server and the REST metrics middleware.
        "metrics_endpoint": "/metrics" if args.metrics else None,
        "parallel_workers": args.workers,
        "load_models_at_startup": True,
        # Keep the metrics/env scratch dirs inside the model dir, not the cwd.
        "metrics_dir": os.path.join(model_dir, ".metrics"),
        "environments_dir": os.path.join(model_dir, ".envs"),
    }
    model_settings = {
        "name": "default",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": args.batch_size,
        "max_batch_time": args.batch_time,
        "parameters": {
            "uri": "./model.joblib",
            "extra": {"predict_fn": args.predict_fn},
        },
    }
    with open(os.path.join(model_dir, "settings.json"), "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    with open(os.path.join(model_dir, "model-settings.json"), "w") as f:
        json.dump(model_settings, f, indent=2)
        f.write("\n")
    print(
        f"mlserver: http=http://{args.host}:{args.port} grpc={grpc_port} "
        f"metrics={f'port {metrics_port}' if args.metrics else 'off'} "
        f"parallel_workers={args.workers} max_batch_size={args.batch_size} "
        f"max_batch_time={args.batch_time}",
        file=sys.stderr,
        flush=True,
    )
    if args.write_only:
        return

    mlserver = os.path.join(VENV, "bin", "mlserver")
    if not os.access(mlserver, os.X_OK):
        sys.exit(f"error: {mlserver} not found; run bench/mlserver/setup.sh first")
    env = dict(os.environ)
    # One BLAS/OpenMP thread per process: HistGradientBoosting uses OpenMP and
    # would otherwise spin threads that fight the pinned core.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    # Settings come from settings.json; don't let stray MLSERVER_* vars override.
    for k in list(env):
        if k.startswith("MLSERVER_") and k != "MLSERVER_VENV":
            del env[k]
    os.chdir(model_dir)
    os.execve(mlserver, [mlserver, "start", model_dir], env)


if __name__ == "__main__":
    main()
