#!/usr/bin/env python3
"""OIP ModelInfer over gRPC: modelloop against MLServer 1.7.1, side by side, same model.

The model, its rows and MLServer's setup are serve_bench.py's (HistGradientBoosting on the
synthetic churn data; MLServer's scikit-learn runtime on the same fitted pipeline). The server
is pinned to core 0, the client to core 1: a Python grpc.aio client in its own process, N
calls in flight on one channel, request messages serialized before the clock starts (2,000
distinct 1-row messages, 40 distinct 256-row ones), replies checked for status OK only.
Rounds interleave the configurations in a rotated order; ratios compare modelloop with
MLServer's best within a round.

    /work/main/.venv/bin/python bench/grpc_bench.py --rounds 2 --duration 6

Needs `bash bench/mlserver/setup.sh` (run by this script). Writes
bench/results/grpc-<date>.json and prints a Markdown table.
"""

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

from serve_bench import free_port, prepare, rss_mib, stop, wait_ready  # noqa: E402

MODELLOOP = Path(sys.executable).with_name("modelloop")
SERVER_CPU, CLIENT_CPU = "0", "1"
METHOD = "/inference.GRPCInferenceService/ModelInfer"

CONFIGS: dict[str, dict[str, Any]] = {
    "modelloop grpc": {"kind": "modelloop", "env": {"MODELLOOP_BATCHING": "true"}},
    "mlserver grpc 1 proc": {"kind": "mlserver", "args": ["--workers", "0"]},
    "mlserver grpc 1 proc batching": {
        "kind": "mlserver",
        "args": ["--workers", "0", "--batch-size", "8", "--batch-time", "0.005"],
    },
}
SCENARIOS = {  # name: (rows per call, calls in flight)
    "1 row, 8 in flight": ("1", 8),
    "1 row, 1 in flight": ("1", 1),
    "256 rows, 8 in flight": ("256", 8),
}


def messages(work: Path) -> dict[str, Path]:
    """Serialized ModelInferRequests of serve_bench's rows: modelloop gets FP32 typed
    contents (its schema), MLServer FP64 with the pandas codec (as its REST bench does)."""
    from modelloop.service.grpc import grpc_predict_v2_pb2 as pb
    from modelloop.store.registry import FolderRegistry

    meta = FolderRegistry(work / "home" / "registry").metadata("default", 1)
    out = {}
    for size in ("1", "256"):
        bodies = (work / f"modelloop-{size}.jsonl").read_text().splitlines()
        chunks = [json.loads(b)["instances"] for b in bodies]
        for kind in ("modelloop", "mlserver"):
            blobs = []
            for rows in chunks:
                req = pb.ModelInferRequest(model_name="default")
                if kind == "mlserver":
                    req.parameters["content_type"].string_param = "pd"
                for f in meta.features:
                    shape = [len(rows), 1] if kind == "modelloop" else [len(rows)]
                    t = req.inputs.add(name=f.name, shape=shape)
                    if f.kind != "numeric":
                        t.datatype = "BYTES"
                        t.contents.bytes_contents.extend((r[f.name] or "").encode() for r in rows)
                        if kind == "mlserver":
                            t.parameters["content_type"].string_param = "str"
                        continue
                    values = [math.nan if r[f.name] is None else r[f.name] for r in rows]
                    if kind == "modelloop":
                        t.datatype = "FP32"
                        t.contents.fp32_contents.extend(values)
                    else:
                        t.datatype = "FP64"
                        t.contents.fp64_contents.extend(values)
                blobs.append(req.SerializeToString())
            path = work / f"grpc-{kind}-{size}.bin"
            path.write_bytes(b"".join(len(b).to_bytes(4, "little") + b for b in blobs))
            out[f"{kind}-{size}"] = path
    return out


def start(config: dict[str, Any], work: Path) -> tuple[subprocess.Popen[bytes], str]:
    http, grpc_port = free_port(), free_port()
    log = open(work / f"server-{http}.log", "wb")  # noqa: SIM115 - closed with the process
    if config["kind"] == "modelloop":
        env = {
            **os.environ,
            "MODELLOOP_HOME": str(work / "home"),
            "MODELLOOP_DATABASE_URL": f"sqlite:///{work / f'log-{http}.db'}",
            "MODELLOOP_GRPC_PORT": str(grpc_port),
            **config["env"],
        }
        cmd = [str(MODELLOOP), "serve", "--port", str(http)]
        ready = f"http://127.0.0.1:{http}/v2/health/ready"
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [
            sys.executable,
            str(HERE / "mlserver" / "serve.py"),
            str(work / "mlserver"),
            "--port",
            str(http),
            "--grpc-port",
            str(grpc_port),
            *config["args"],
        ]
        ready = f"http://127.0.0.1:{http}/v2/models/default/ready"
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *cmd],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(ready, proc)
    return proc, f"127.0.0.1:{grpc_port}"


def drive(target: str, bodies: Path, inflight: int, seconds: float) -> dict[str, float]:
    run = subprocess.run(
        [
            "taskset",
            "-c",
            CLIENT_CPU,
            sys.executable,
            __file__,
            "--client",
            target,
            str(bodies),
            str(inflight),
            str(seconds),
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"client failed: {run.stderr[-2000:]}")
    result: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


async def _client(target: str, bodies_path: Path, inflight: int, seconds: float) -> None:
    import grpc

    raw = bodies_path.read_bytes()
    bodies, pos = [], 0
    while pos < len(raw):
        n = int.from_bytes(raw[pos : pos + 4], "little")
        bodies.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        call = channel.unary_unary(METHOD)
        end = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    await call(bodies[i % len(bodies)], timeout=10.0)
                    latencies.append(time.perf_counter() - t0)
                except grpc.aio.AioRpcError as e:
                    errors += 1
                    if errors == 1:
                        print(f"first error: {e.code()} {e.details()}", file=sys.stderr)
                i += inflight

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(inflight)))
        took = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    print(
        json.dumps(
            {
                "rps": len(latencies) / took,
                "p50_ms": pct(0.5),
                "p90_ms": pct(0.9),
                "p99_ms": pct(0.99),
                "errors": errors,
            }
        )
    )


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| configuration | scenario | calls/s | rows/s | p50 ms | p99 ms | errors | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, (size, _) in SCENARIOS.items():
        for config in CONFIGS:
            rr = [r for r in results if r["config"] == config and r["scenario"] == scenario]
            if not rr:
                continue
            rps = statistics.median(r["rps"] for r in rr)
            lines.append(
                f"| {config} | {scenario} | {rps:,.0f} | {rps * int(size):,.0f} | "
                f"{statistics.median(r['p50_ms'] for r in rr):.2f} | "
                f"{statistics.median(r['p99_ms'] for r in rr):.2f} | "
                f"{sum(r['errors'] for r in rr):.0f} | "
                f"{statistics.median(r['rss_mib'] for r in rr):.0f} |"
            )
    lines.append("")
    for scenario in SCENARIOS:
        ratios = []
        for rnd in sorted({r["round"] for r in results}):
            rr = [r for r in results if r["round"] == rnd and r["scenario"] == scenario]
            ours = max((r["rps"] for r in rr if r["config"].startswith("modelloop")), default=0)
            theirs = max((r["rps"] for r in rr if r["config"].startswith("mlserver")), default=0)
            if ours and theirs:
                ratios.append(ours / theirs)
        if ratios:
            shown = ", ".join(f"{x:.1f}x" for x in ratios)
            lines.append(
                f"{scenario}: modelloop / MLServer's best per round: {shown} "
                f"(median {statistics.median(ratios):.1f}x)"
            )
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/modelloop-grpc-bench"))
    args = ap.parse_args()
    subprocess.run(["bash", str(HERE / "mlserver" / "setup.sh")], check=True)
    prepare(args.work)
    bodies = messages(args.work)
    results: list[dict[str, Any]] = []
    names = list(CONFIGS)
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            config = CONFIGS[name]
            proc, target = start(config, args.work)
            try:
                for scenario, (size, inflight) in SCENARIOS.items():
                    path = bodies[f"{config['kind']}-{size}"]
                    drive(target, path, inflight, args.warmup)
                    r = drive(target, path, inflight, args.duration)
                    r.update(config=name, scenario=scenario, round=rnd, rss_mib=rss_mib(proc.pid))
                    print(json.dumps(r), flush=True)
                    results.append(r)
            finally:
                stop(proc)
    table = report(results)
    print(table)
    out = HERE / "results" / f"grpc-{dt.date.today().isoformat()}.json"
    out.write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "duration_s": args.duration,
                "cpus": {"server": SERVER_CPU, "client": CLIENT_CPU},
                "results": results,
                "table": table,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--client":
        asyncio.run(_client(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
        raise SystemExit(0)
    raise SystemExit(main())
