#!/usr/bin/env python3
"""Soak: `modelloop up` (serve + monitor + trainer) under steady load for ten minutes, with
feedback labels and a covariate shift halfway, and a row bound on the prediction log.

Load: wrk (Debian package) with bench/bodies.lua, 1-row predictions paced by a per-request
delay (default 16 connections x 2 ms: about 5,000 req/s, half the service's measured 1-row
capacity), every request with its own id. A feedback poster labels every 5th logged
prediction 3 s after it was logged. Halfway the rows switch to a shifted distribution
(tenure_months +0.5 std), which the monitor should flag and the trainer retrain on.

Samples every 10 s: RSS of each process, the database's size on disk, rows in the log.
Judges: no failed request, no failed feedback call, RSS growth under 10 % after warm-up
(from the 60 s sample to the end, for serve and monitor; the trainer's RSS after it has
trained is reported), the log never above its bound plus one retention interval of traffic.

    .venv/bin/python bench/soak.py [--minutes 10] [--connections 12] [--delay-ms 2]

Writes bench/results/soak-<date>.json and prints a summary.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this checkout's sources, also in the processes started (so a copy of the tree can be soaked)
MODELLOOP = [sys.executable, "-m", "modelloop.cli"]
sys.path.insert(0, str(ROOT / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid: int) -> dict[str, int]:
    """The `up` process's workers by name (serve, monitor, trainer)."""
    found = {}
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for kid in kids:
        try:
            argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"modelloop.cli" in argv:
            found[argv[argv.index(b"modelloop.cli") + 1].decode()] = int(kid)
    return found


def write_rows(work: Path) -> dict[str, tuple[Path, list[str]]]:
    """Instances (one JSON object per line) and their true labels, per phase."""
    import math

    from modelloop.training import synthetic

    phases = {
        "steady": synthetic.generate(50_000, seed=11),
        "shifted": synthetic.generate(
            50_000, seed=12, shift=synthetic.Shift(numeric={"tenure_months": 0.5})
        ),
    }
    out = {}
    for name, frame in phases.items():
        labels = [str(v) for v in frame.pop(synthetic.TARGET)]
        lines = []
        for rec in frame.to_dict("records"):
            clean = {
                k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()
            }
            lines.append(json.dumps(clean, separators=(",", ":")))
        path = work / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        out[name] = (path, labels)
    return out


class Feedback(threading.Thread):
    """Labels every 5th logged prediction, `delay` seconds after it was logged."""

    def __init__(self, db: Path, url: str, labels: dict[str, list[str]], delay: float = 3.0):
        super().__init__(daemon=True)
        self.db, self.url, self.labels, self.delay = db, url, labels, delay
        self.stop = threading.Event()
        self.posted = self.matched = self.unknown = self.failed = 0
        self.errors: list[str] = []

    def label(self, pid: str) -> str:
        prefix, _tid, counter = pid.split("-")
        rows = self.labels[prefix]
        return rows[int(counter) % len(rows)]

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        seq = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.wait(1.0):
                try:
                    records = conn.execute(
                        "SELECT seq, data FROM prediction_batches WHERE seq > ? AND ts_max < ? "
                        "ORDER BY seq LIMIT 100",
                        (seq, time.time() - self.delay),
                    ).fetchall()
                    from modelloop.store.log import encoding

                    got = [
                        (rseq, pid)
                        for rseq, data in records
                        for pid in encoding.column_values(encoding.decode(data), "id")
                    ]
                except sqlite3.Error as e:
                    self.errors.append(f"read: {e}")
                    continue
                if not got:
                    continue
                seq = got[-1][0]
                items = [
                    {"id": pid, "label": self.label(pid)}
                    for n, (_, pid) in enumerate(got)
                    if n % 5 == 0
                ]
                for i in range(0, len(items), 1000):
                    chunk = items[i : i + 1000]
                    try:
                        r = client.post("/v1/feedback", json={"items": chunk})
                    except httpx.HTTPError as e:
                        self.failed += 1
                        self.errors.append(repr(e))
                        continue
                    if r.status_code != 200:
                        self.failed += 1
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    body = r.json()
                    self.posted += len(chunk)
                    self.matched += body["matched"]
                    self.unknown += len(body["unknown_ids"])
        conn.close()


class Sampler(threading.Thread):
    def __init__(self, up_pid: int, home: Path, every: float = 10.0):
        super().__init__(daemon=True)
        self.up_pid, self.home, self.every = up_pid, home, every
        self.stop = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def sample(self) -> None:
        db = self.home / "modelloop.db"
        size = sum(p.stat().st_size for p in self.home.glob("modelloop.db*") if p.exists())
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
                rows = conn.execute(
                    "SELECT coalesce(sum(rows), 0) FROM prediction_batches"
                ).fetchone()[0]
                labels = conn.execute("SELECT count(*) FROM feedback").fetchone()[0]
        except sqlite3.Error:
            rows = labels = -1
        procs = children(self.up_pid)
        self.samples.append(
            {
                "t": round(time.monotonic() - self.t0, 1),
                "rss_mib": {name: round(rss_mib(pid), 1) for name, pid in procs.items()},
                "db_mib": round(size / 2**20, 1),
                "log_rows": rows,
                "feedback_rows": labels,
            }
        )

    def run(self) -> None:
        self.sample()
        while not self.stop.wait(self.every):
            self.sample()
        self.sample()


def wrk(url: str, rows: Path, prefix: str, seconds: int, conns: int, delay_ms: int) -> dict:
    run = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "bodies.lua"),
            f"{url}/v1/models/default/predict",
        ],
        env={**os.environ, "ROWS": str(rows), "PREFIX": prefix, "DELAY_MS": str(delay_ms)},
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"RESULT (.*)", run.stdout)
    if run.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed: {run.stderr or run.stdout}")
    got = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    got["req_per_s"] = round(got["requests"] / (got["duration_us"] / 1e6))
    return got


def events(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [
            {"ts": ts, "kind": kind, "actor": actor}
            for ts, kind, actor in conn.execute("SELECT ts, kind, actor FROM events ORDER BY id")
        ]


def growth(samples: list[dict[str, Any]], name: str, warm: float) -> dict[str, float] | None:
    series = [(s["t"], s["rss_mib"].get(name)) for s in samples if s["rss_mib"].get(name)]
    if not series:
        return None
    after = [v for t, v in series if t >= warm] or [series[-1][1]]
    return {
        "start": series[0][1],
        "after_warmup": after[0],
        "end": series[-1][1],
        "max": max(v for _, v in series),
        "growth_pct": round(100 * (series[-1][1] - after[0]) / after[0], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--delay-ms", type=int, default=2)
    ap.add_argument("--retention-rows", type=int, default=500_000)
    ap.add_argument("--retention-interval", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS is baselined")
    ap.add_argument("--work", type=Path, default=Path("/tmp/modelloop-soak"))
    ap.add_argument(
        "--out", type=Path, default=HERE / "results" / f"soak-{time.strftime('%Y-%m-%d')}.json"
    )
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    if args.work.exists():
        shutil.rmtree(args.work)
    home = args.work / "home"
    home.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")},
        "PYTHONPATH": str(ROOT / "src"),
        "MODELLOOP_HOME": str(home),
        "MODELLOOP_RETENTION_ROWS": str(args.retention_rows),
        "MODELLOOP_RETENTION_INTERVAL": str(args.retention_interval),
    }
    print("training the default model ...", flush=True)
    subprocess.run([*MODELLOOP, "train"], env=env, check=True, stdout=subprocess.DEVNULL)
    phases = write_rows(args.work)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    up = subprocess.Popen(
        [*MODELLOOP, "up", "--port", str(port)],
        env={**env, "MODELLOOP_MONITOR_PORT": str(free_port())},
        stdout=open(args.work / "up.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"modelloop up did not come up; see {args.work / 'up.log'}")
            time.sleep(0.5)
        sampler = Sampler(up.pid, home)
        feedback = Feedback(home / "modelloop.db", url, {k: v[1] for k, v in phases.items()})
        sampler.start()
        feedback.start()
        half = int(args.minutes * 30)
        results = {}
        for name in ("steady", "shifted"):
            print(f"{name}: {half} s of load ...", flush=True)
            results[name] = wrk(url, phases[name][0], name, half, args.connections, args.delay_ms)
            print(f"  {results[name]}", flush=True)
        time.sleep(5)  # the last labels
        feedback.stop.set()
        feedback.join(60)
        time.sleep(args.retention_interval + 5)  # one more retention pass
        sampler.stop.set()
        sampler.join(60)
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(90)
    samples = sampler.samples
    rate = max(r["req_per_s"] for r in results.values())
    bound = args.retention_rows + int(rate * args.retention_interval * 1.5)
    max_rows = max(s["log_rows"] for s in samples)
    rss = {name: growth(samples, name, args.warmup) for name in ("serve", "monitor", "trainer")}
    failures = sum(
        r["non200"] + r["connect"] + r["read"] + r["write"] + r["timeout"] for r in results.values()
    )
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "minutes": args.minutes,
        "load": results,
        "failed_requests": failures,
        "feedback": {
            "posted": feedback.posted,
            "matched": feedback.matched,
            "unknown": feedback.unknown,
            "failed_calls": feedback.failed,
            "errors": feedback.errors[:5],
        },
        "rss_mib": rss,
        "db_mib": {
            "start": samples[0]["db_mib"],
            "end": samples[-1]["db_mib"],
            "max": max(s["db_mib"] for s in samples),
        },
        "log_rows": {
            "retention_rows": args.retention_rows,
            "max_seen": max_rows,
            "end": samples[-1]["log_rows"],
            "bound_with_one_interval_of_traffic": bound,
            "honoured": max_rows <= bound,
        },
        "events": [e["kind"] for e in events(home / "modelloop.db")],
        "up_exit_code": code,
        "samples": samples,
    }
    ok = (
        failures == 0
        and feedback.failed == 0
        and all(g is None or g["growth_pct"] < 10 for n, g in rss.items() if n != "trainer")
        and max_rows <= bound
        and code == 0
    )
    summary["passed"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    brief = {k: v for k, v in summary.items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
