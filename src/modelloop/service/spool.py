"""Log rows the database refused, kept on local disk until it takes them again.

Each failed batch becomes one JSON-lines file, written to a temporary name, fsynced and renamed,
so a file is whole or absent. Replaying claims a file by renaming it, writes its rows (the
database skips ids it already has, so a replay never doubles a row) and deletes it.
"""

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import orjson

from modelloop.store.predictions import LogRow, PredictionLog

log = logging.getLogger("modelloop.service.log")

CLAIM_TIMEOUT = 300.0  # a claimed file older than this was left by a process that died


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.prefix = uuid.uuid4().hex[:8]
        self._n = 0

    def add(self, rows: Sequence[LogRow]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._n += 1
        name = f"log-{time.time():.6f}-{self.prefix}-{self._n}.jsonl"
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "wb") as f:
            for row in rows:
                f.write(orjson.dumps(row) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        final = self.directory / name
        os.rename(tmp, final)
        return final

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        now = time.time()
        found = sorted(self.directory.glob("log-*.jsonl"))
        for stale in self.directory.glob("replaying-*.jsonl"):
            with contextlib.suppress(OSError):
                if now - stale.stat().st_mtime > CLAIM_TIMEOUT:
                    found.append(stale)
        return found

    def pending_rows(self) -> int:
        total = 0
        for path in self.files():
            with contextlib.suppress(OSError):
                total += path.read_bytes().count(b"\n")
        return total

    def replay(self, sink: PredictionLog) -> tuple[int, int]:
        """Write spooled files back, oldest first; stop at the first failure.
        Returns (rows read back, rows the database did not have yet)."""
        read = inserted = 0
        for path in self.files():
            claimed = (
                self.directory / f"replaying-{self.prefix}-{path.name.removeprefix('replaying-')}"
            )
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process took it
            rows = [orjson.loads(line) for line in claimed.read_bytes().splitlines() if line]
            try:
                inserted += sink.write(rows)
            except Exception as e:
                os.rename(claimed, path)
                log.warning(
                    "spool replay stopped, the database still refuses: %s", str(e).splitlines()[0]
                )
                break
            claimed.unlink()
            read += len(rows)
        return read, inserted
