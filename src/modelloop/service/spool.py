"""Log rows the database could not take, kept on local disk until it takes them again.

Each batch becomes one JSON-lines file, written to a temporary name, fsynced and renamed, so a
file is whole or absent. Replaying claims a file by renaming it, writes its rows (the database
skips ids it already has, so a replay never doubles a row) and deletes it. Rows the database
refuses, and lines that are not a log row, go to `quarantine/` beside the spool files, named
after the batch or file they came from:

- `<origin>.rows.jsonl`: rows the database refused, in the spool's format (fix them and move
  the file back into the spool as `log-<anything>.jsonl` to have them replayed);
- `<origin>.unreadable`: lines of a spool file that were not a log row, as they were.
"""

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from modelloop.store.log import LogRow, as_log_row

log = logging.getLogger("modelloop.service.log")

CLAIM_TIMEOUT = 300.0  # a claimed file older than this was left by a process that died
PROBE_BYTES = 4096  # what a probe writes to find out whether the spool takes files again


def _write_atomically(directory: Path, name: str, lines: Iterable[bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.tmp"
    try:
        with open(tmp, "wb") as f:
            for line in lines:
                f.write(line)
                f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        final = directory / name
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return final


def _row_json(row: LogRow) -> bytes:
    try:
        return orjson.dumps(row)
    except TypeError:  # a value JSON cannot hold: keep what can be shown of it (replayed,
        # it is not a log row: it goes to the quarantine's unreadable lines)
        return orjson.dumps({"unencodable_row": repr(row)})


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.quarantine_dir = directory / "quarantine"
        self.prefix = uuid.uuid4().hex[:8]
        self._n = 0

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"{kind}-{time.time():.6f}-{self.prefix}-{self._n}"

    def add(self, rows: Sequence[LogRow]) -> Path:
        return _write_atomically(
            self.directory, self._name("log") + ".jsonl", (_row_json(r) for r in rows)
        )

    def probe(self) -> None:
        """Write and remove a small file: raises OSError while the spool takes no files."""
        path = _write_atomically(self.directory, f".probe-{self.prefix}", [b"0" * PROBE_BYTES])
        path.unlink()

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

    def claim(self, path: Path) -> Path | None:
        """Take a spool file for replay; None if another process has taken it."""
        original = path.name.removeprefix("replaying-")
        claimed = self.directory / f"replaying-{self.prefix}-{original}"
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def release(self, claimed: Path, path: Path) -> None:
        """Give a claimed file back (to be replayed later)."""
        os.rename(claimed, path)

    def read(self, path: Path) -> tuple[list[LogRow], list[bytes]]:
        """The file's log rows, and the lines that are not one (corrupt JSON, a wrong shape)."""
        rows: list[LogRow] = []
        unreadable: list[bytes] = []
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                row = as_log_row(orjson.loads(line))
            except orjson.JSONDecodeError:
                row = None
            if row is None:
                unreadable.append(line)
            else:
                rows.append(row)
        return rows, unreadable

    def quarantine(
        self, origin: str | None, rows: Sequence[LogRow], unreadable: Sequence[bytes] = ()
    ) -> list[Path]:
        """Set rows (and unreadable lines) aside; `origin` names the spool file they came
        from, None for a batch straight from the queue. Returns the files written."""
        if origin is None:
            stem = self._name("batch")
        else:
            stem = origin.removeprefix("replaying-").removesuffix(".jsonl")
        written = []
        if rows:
            rows_json = [_row_json(r) for r in rows]
            written.append(_write_atomically(self.quarantine_dir, f"{stem}.rows.jsonl", rows_json))
        if unreadable:
            written.append(_write_atomically(self.quarantine_dir, f"{stem}.unreadable", unreadable))
        return written
