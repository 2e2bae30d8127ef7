"""`modelloop simulate`: realistic traffic with delayed feedback, shifted part way if asked.

Rows come from the built-in synthetic generator (the one the default model trains on); true
labels are posted as feedback after a delay, so the monitor sees live accuracy. A shift starts
at `--at` seconds: covariate (a numeric feature's mean moves), category (one category's share
grows) or concept (the labelling rule changes).
"""

import argparse
import collections
import http.client
import json
import math
import os
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelloop.cli_output import fail, progress


@dataclass
class Stats:
    sent: int = 0
    errors: int = 0
    feedback: int = 0
    feedback_errors: int = 0
    versions: collections.Counter[int] = field(default_factory=collections.Counter)
    recent: collections.deque[tuple[float, bool]] = field(
        default_factory=lambda: collections.deque(maxlen=20_000)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accuracy(self, since: float) -> tuple[float | None, int]:
        with self.lock:
            hits = [ok for t, ok in self.recent if t >= since]
        return (sum(hits) / len(hits) if hits else None), len(hits)


class Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"--url must be http://host:port, got {url!r}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.local = threading.local()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json", **(headers or {})}
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.local.conn = conn
            try:
                conn.request("POST", path, data, headers)
                resp = conn.getresponse()
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError


def _rows(frame: Any, target: str) -> list[tuple[dict[str, Any], Any]]:
    out = []
    for rec in frame.to_dict("records"):
        label = rec.pop(target)
        row = {
            k: (None if (isinstance(v, float) and math.isnan(v)) or v is None else v)
            for k, v in rec.items()
        }
        out.append((row, label))
    return out


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    from modelloop.training import synthetic

    client = Client(args.url)
    before = synthetic.Shift()
    if args.shift == "covariate":
        after = synthetic.Shift(numeric={args.feature or "tenure_months": args.amount})
    elif args.shift == "category":
        after = synthetic.Shift(
            categorical={args.feature or "region": (args.category or "west", args.amount)}
        )
    elif args.shift == "concept":
        after = synthetic.Shift(concept=1)
    else:
        after = before
    import numpy as np

    rng = np.random.default_rng(args.seed)
    stats = Stats()
    pending: collections.deque[tuple[float, str, Any]] = collections.deque()
    stop = threading.Event()
    start = time.monotonic()
    path = f"/v1/models/{args.model}/predict"

    def send(batch: list[tuple[dict[str, Any], Any]]) -> None:
        try:
            status, body = client.post(path, {"instances": [r for r, _ in batch]})
        except OSError:
            status, body = 0, None
        now = time.monotonic()
        with stats.lock:
            if status != 200:
                stats.errors += len(batch)
                return
            stats.sent += len(batch)
            stats.versions[body["version"]] += len(batch)
            for (_, label), pred in zip(batch, body["predictions"], strict=True):
                stats.recent.append((now, str(pred.get("label", pred.get("value"))) == str(label)))
                pending.append((now + args.feedback_delay, pred["id"], label))

    # the service's feedback token, when it has one (MODELLOOP_FEEDBACK_TOKEN)
    token = os.environ.get("MODELLOOP_FEEDBACK_TOKEN", "").strip()
    auth = {"authorization": f"Bearer {token}"} if token else {}

    def feedback_loop() -> None:
        while not (stop.is_set() and not pending):
            now = time.monotonic()
            due: list[dict[str, Any]] = []
            while pending and pending[0][0] <= now and len(due) < 5000:
                _, pid, label = pending.popleft()
                due.append({"id": pid, "label": label})
            if due:
                try:
                    status, _ = client.post("/v1/feedback", {"items": due}, auth)
                except OSError:
                    status = 0
                with stats.lock:
                    if status == 200:
                        stats.feedback += len(due)
                    else:
                        stats.feedback_errors += len(due)
            else:
                time.sleep(0.1)

    fb = threading.Thread(target=feedback_loop, daemon=True)
    fb.start()
    shown = 0.0
    sent_rows = 0
    shifted = False
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        while (elapsed := time.monotonic() - start) < args.duration:
            shift = after if args.at is not None and elapsed >= args.at else before
            if shift is after and args.shift and not shifted:
                shifted = True
                progress(f"{elapsed:6.1f} s  shift starts: {args.shift}")
            due_rows = int(args.rate * elapsed) - sent_rows
            if due_rows >= args.batch:
                n = due_rows - due_rows % args.batch
                rows = _rows(synthetic.generate(n, rng, shift), synthetic.TARGET)
                for i in range(0, n, args.batch):
                    pool.submit(send, rows[i : i + args.batch])
                sent_rows += n
            if elapsed - shown >= args.report_every:
                shown = elapsed
                acc, n = stats.accuracy(time.monotonic() - args.report_every)
                with stats.lock:
                    versions = dict(stats.versions)
                progress(
                    f"{elapsed:6.1f} s  sent {stats.sent:>8}  errors {stats.errors}  "
                    f"feedback {stats.feedback:>8}  versions {versions}  accuracy "
                    f"(last {args.report_every:.0f} s) "
                    f"{'-' if acc is None else f'{acc:.3f}'} on {n}"
                )
            time.sleep(0.01)
    stop.set()
    fb.join(args.feedback_delay + 30)
    acc, n = stats.accuracy(0)
    return {
        "sent": stats.sent,
        "errors": stats.errors,
        "feedback": stats.feedback,
        "feedback_errors": stats.feedback_errors,
        "versions": dict(stats.versions),
        "accuracy": acc,
        "scored": n,
    }


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("simulate", help="send synthetic traffic with feedback to a service")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--model", default="default")
    p.add_argument("--rate", type=float, default=200.0, help="rows per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--batch", type=int, default=1, help="rows per request")
    p.add_argument("--workers", type=int, default=4, help="concurrent connections")
    p.add_argument("--shift", choices=["covariate", "category", "concept"])
    p.add_argument("--at", type=float, help="seconds before the shift starts")
    p.add_argument(
        "--feature",
        help="covariate: numeric feature (default tenure_months); "
        "category: categorical feature (default region)",
    )
    p.add_argument("--category", help="category whose share grows (default west)")
    p.add_argument(
        "--amount",
        type=float,
        default=0.5,
        help="covariate: mean shift in stds; category: share added (0-1)",
    )
    p.add_argument("--feedback-delay", type=float, default=2.0, help="seconds")
    p.add_argument("--report-every", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")


def simulate_command(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.duration <= 0 or args.batch <= 0 or args.workers <= 0:
        return fail("--rate, --duration, --batch and --workers must be positive")
    if args.shift and args.at is None:
        args.at = args.duration / 2
    try:
        summary = simulate(args)
    except ValueError as e:
        return fail(str(e))
    if args.json:
        print(json.dumps(summary))
    else:
        progress(f"done: {summary}")
    return 0 if summary["sent"] else 1
