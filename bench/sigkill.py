#!/usr/bin/env python3
"""How many acknowledged predictions a SIGKILL loses, in the default and the durable mode.

Starts `modelloop serve` on a trained registry, sends 1-row predictions from 8 threads,
SIGKILLs the server after --seconds, and counts acknowledged ids missing from the log. Also
reports each mode's throughput before the kill.

    .venv/bin/python bench/sigkill.py [--rounds 3] [--seconds 5]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    home: Path, durable: bool, seconds: float, rows: list[dict[str, object]]
) -> dict[str, float]:
    db = home / "modelloop.db"
    for p in home.glob("modelloop.db*"):
        p.unlink()
    shutil.rmtree(home / "spool", ignore_errors=True)
    port = free_port()
    env = {**os.environ, "MODELLOOP_HOME": str(home), "MODELLOOP_DURABLE": str(durable).lower()}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/modelloop"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(t: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            i = t
            while not stop.is_set():
                try:
                    r = c.post(
                        "/v1/models/default/predict", json={"instances": [rows[i % len(rows)]]}
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        acked.append(r.json()["predictions"][0]["id"])
                i += 8

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    stored = logged_ids(db)
    lost = len(set(acked) - stored)
    return {"acknowledged": len(acked), "lost": lost, "rate": len(acked) / seconds}


def logged_ids(db: Path) -> set[str]:
    """Every id in the log, as its caller got it."""
    import math

    from modelloop.store.database import open_database
    from modelloop.store.log import PredictionLog

    database = open_database(f"sqlite:///{db}")
    try:
        log = PredictionLog(database)
        tables = log.rows_between("default", -math.inf, math.inf)
        return {pid for t in tables for pid in t.column("id").to_pylist()}
    finally:
        database.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/modelloop-sigkill"))
    args = ap.parse_args()
    from modelloop.store.registry import FolderRegistry
    from modelloop.training import synthetic
    from modelloop.training.pipeline import TrainRequest, run_training

    shutil.rmtree(args.work, ignore_errors=True)
    home = args.work / "home"
    run_training(TrainRequest(model="default"), FolderRegistry(home / "registry"))
    frame = synthetic.generate(2000, 5, with_target=False)
    rows = json.loads(frame.to_json(orient="records"))
    results = []
    for rnd in range(args.rounds):
        for durable in (False, True):
            r = run(home, durable, args.seconds, rows)
            r.update(round=rnd + 1, durable=durable)
            results.append(r)
            print(
                f"round {rnd + 1} {'durable' if durable else 'default':<8} acknowledged "
                f"{r['acknowledged']:>6}  lost {r['lost']:>4}  ({r['rate']:.0f} req/s)",
                flush=True,
            )
    out = ROOT / "bench" / "results" / f"sigkill-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
