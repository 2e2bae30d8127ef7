"""The columnar prediction log: bytes per row, encode and decode speed, feedback and the join.

    PYTHONPATH=src python bench/log_store_bench.py [--rows 1000000] [--pg URL]

Rows as the service logs them: 9 numeric features, 2 classes (float32 probabilities), 250-row
records of generated ids (1-row requests). Figures:
- bytes per row of a record's Arrow IPC stream, zstd, lz4 and uncompressed, and encode us/row;
- database bytes per row on a real SQLite file after VACUUM (page_count * page_size / rows);
- decode rows/s of batches_since (records to numpy Batches, SQL read included);
- add_feedback of 10,000 generated ids, ms;
- labelled() joining 100,000 labels to the log, s;
- the log writer thread's cost per row (`PredictionLog.write` of one flush, SQLite), the same
  predictions handed over as log rows and as chunks, for 256-row and 1-row requests,
  interleaved, as a ratio.
"""

import argparse
import os
import sqlite3
import tempfile
import time

import numpy as np
import pyarrow as pa

from modelloop.store.database import open_database
from modelloop.store.log import Chunk, LogRow, PredictionLog, encoding, ids

FEATURES = [f"f{i}" for i in range(9)]
RECORD = 250


def make_rows(
    n: int, start: int, token: str, rng: np.random.Generator, caller: bool = False
) -> list[LogRow]:
    x = rng.normal(size=(n, len(FEATURES)))
    p = rng.random(n).astype(np.float32)
    rows: list[LogRow] = []
    now = 1_700_000_000.0 + start * 0.001
    for i in range(n):
        tag = ids.new_tag()
        rows.append(
            {
                "id": (
                    f"~{os.urandom(16).hex()[:22]}:0"  # schema 2's ids: indexed like a caller's
                    if caller
                    else ids.request_id(token, start + i, tag) + ":0"
                ),
                "ts": now + i * 0.001,
                "model": "m",
                "version": 1,
                "features": dict(zip(FEATURES, x[i].tolist(), strict=True)),
                "output": {
                    "label": "yes" if p[i] > 0.5 else "no",
                    "probabilities": {"no": float(1 - p[i]), "yes": float(p[i])},
                },
                "latency_ms": 0.8 + i * 0.01,
            }
        )
    return rows


def encode_figures(rng: np.random.Generator) -> None:
    token = ids.new_token()
    rows = make_rows(RECORD, 0, token, rng)
    located = [ids.locate(r["id"]) for r in rows]
    numbers = [w.row for w in located if w]
    firsts = [w.first for w in located if w]
    tags = [w.tag for w in located if w]
    for codec in ("zstd", "lz4", None):
        encoding._WRITE = pa.ipc.IpcWriteOptions(compression=codec)
        data = encoding.encode(rows, numbers, firsts, tags)
        runs = 400
        t = time.perf_counter()
        for _ in range(runs):
            encoding.encode(rows, numbers, firsts, tags)
        us = (time.perf_counter() - t) / runs / RECORD * 1e6
        t = time.perf_counter()
        for _ in range(runs):
            encoding.decode(data)
        dec = (time.perf_counter() - t) / runs / RECORD * 1e6
        print(
            f"record ({codec or 'uncompressed'}): {len(data) / RECORD:.1f} bytes/row, "
            f"encode {us:.2f} us/row, IPC read {dec:.3f} us/row"
        )
    encoding._WRITE = pa.ipc.IpcWriteOptions(compression=encoding.COMPRESSION)


def make_chunks(
    n: int, per_request: int, token: str, start: int, rng: np.random.Generator
) -> list[Chunk]:
    """`n` predictions as the service hands them over: requests of `per_request` rows."""
    out = []
    for first in range(start, start + n, per_request):
        x = rng.normal(size=(len(FEATURES), per_request))
        p = rng.random(per_request).astype(np.float32)
        tag = os.urandom(8)
        out.append(
            Chunk(
                "m",
                1,
                token,
                first,
                tag,
                ids.request_id(token, first, ids.tag_of(tag)),
                1_700_000_000.0 + first * 0.001,
                0.8,
                FEATURES,
                x.tolist(),
                ["yes" if v > 0.5 else "no" for v in p.tolist()],
                np.stack([1 - p, p], axis=1).tolist(),
                ["no", "yes"],
            )
        )
    return out


def writer_figures(rng: np.random.Generator, flushes: int = 200) -> None:
    folder = tempfile.mkdtemp(prefix="log_bench_writer_")
    db = open_database(f"sqlite:///{os.path.join(folder, 'log.db')}")
    log = PredictionLog(db)
    token, start = ids.new_token(), 0
    for per_request in (256, 1):
        flush = 256 if per_request == 256 else RECORD
        cost = {"rows": 0.0, "chunks": 0.0}
        for _ in range(flushes):
            for kind in ("rows", "chunks"):
                chunks = make_chunks(flush, per_request, token, start, rng)
                start += flush
                batch = chunks if kind == "chunks" else [r for c in chunks for r in c.log_rows()]
                t = time.perf_counter()
                log.write(batch, fresh=True)
                cost[kind] += time.perf_counter() - t
        per_row = {k: v / (flushes * flush) * 1e6 for k, v in cost.items()}
        print(
            f"writer, {per_request}-row requests: rows {per_row['rows']:.2f} us/row, "
            f"chunks {per_row['chunks']:.2f} us/row "
            f"(chunks / rows {per_row['chunks'] / per_row['rows']:.2f})"
        )
    db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--pg", default=None, help="a PostgreSQL database of its own (its tables are made there)"
    )
    ap.add_argument("--caller-ids", action="store_true", help="ids of schema 2's form")
    ap.add_argument("--writer", action="store_true", help="only the writer's rows/chunks figures")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    writer_figures(rng)
    if a.writer:
        return
    encode_figures(rng)

    folder = tempfile.mkdtemp(prefix="log_bench_")
    path = os.path.join(folder, "log.db")
    db = open_database(a.pg or f"sqlite:///{path}")
    log = PredictionLog(db)
    token = ids.new_token()
    written: list[str] = []
    t = time.perf_counter()
    write_s = 0.0
    for start in range(0, a.rows, RECORD):
        if start % ids.TOKEN_ROWS == 0 and start:
            token = ids.new_token()
        rows = make_rows(RECORD, start % ids.TOKEN_ROWS, token, rng, a.caller_ids)
        w = time.perf_counter()
        log.write(rows)
        write_s += time.perf_counter() - w
        written += [r["id"] for r in rows[::2]]
    print(
        f"wrote {a.rows} rows in {time.perf_counter() - t:.1f} s "
        f"(write calls {write_s / a.rows * 1e6:.2f} us/row)"
    )
    if not a.pg:
        db.dispose()
        con = sqlite3.connect(path)
        con.execute("VACUUM")
        pages, size = (
            con.execute("PRAGMA page_count").fetchone()[0],
            con.execute("PRAGMA page_size").fetchone()[0],
        )
        con.close()
        print(f"SQLite after VACUUM: {pages * size / a.rows:.1f} bytes/row (all tables)")
        db = open_database(f"sqlite:///{path}")
        log = PredictionLog(db)

    def read_all() -> int:
        seq, n = 0, 0
        while batches := log.batches_since("m", seq, 20_000, float("inf")):
            seq = batches[-1].seq
            n += sum(b.rows for b in batches)
        return n

    read_all()  # warm the page cache
    t = time.perf_counter()
    n = read_all()
    s = time.perf_counter() - t
    print(f"batches_since: {n} rows in {s:.3f} s = {n / s:,.0f} rows/s")

    pick = rng.choice(len(written), size=min(10_000, len(written)), replace=False)
    items = [(written[i], "yes") for i in pick]
    log.add_feedback(items[:100])  # warm up
    t = time.perf_counter()
    got = log.add_feedback(items)
    ms = (time.perf_counter() - t) * 1000
    print(f"add_feedback 10,000 ids scattered over the log: {ms:.1f} ms, {got[0]} matched")

    near = [(pid, "yes") for pid in written[-10_000:]]  # the latest 10,000 (80 records)
    log.add_feedback(near[:100])
    t = time.perf_counter()
    got = log.add_feedback(near)
    print(f"add_feedback 10,000 recent ids: {(time.perf_counter() - t) * 1000:.1f} ms")

    labels = [(written[i], "no") for i in rng.choice(len(written), size=100_000, replace=False)]
    for start in range(0, len(labels), 10_000):
        log.add_feedback(labels[start : start + 10_000])
    t = time.perf_counter()
    joined = log.labelled("m", limit=1_000_000)
    print(f"labelled(): {len(joined)} labels joined in {time.perf_counter() - t:.3f} s")
    db.dispose()


if __name__ == "__main__":
    main()
