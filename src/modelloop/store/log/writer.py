"""Writing the log: a batch of rows and chunks becomes one record per (model, version, token).

Chunks (store/log/chunk.py) of a token no row of the batch shares are encoded column by
column; any other chunk is written as its rows.

Generated rows (ids.locate) go under their own token and row numbers; rows a record of the
token already holds are dropped (a replayed write inserts nothing, a regrouped one only its new
rows), and the record's (token, first_row) is the exactly-once key against a concurrent
writer. Caller rows go under a token the store draws, numbered 0..n-1; their ids are indexed in
prediction_ids first, and a row whose id is already logged (or repeats an id of the batch) is
dropped: the first logged wins. One transaction per write.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from modelloop.store.errors import RowsRejected
from modelloop.store.log import chunk, encoding, ids
from modelloop.store.log.chunk import Chunk, Encoded, Entry
from modelloop.store.log.rows import LogRow
from modelloop.store.schema import prediction_batches, prediction_ids

MAX_ID = 128
MAX_MODEL = 63
_INT32 = (-(1 << 31), 1 << 31)


@dataclass
class Group:
    model: str
    version: int
    token: str | None  # None: caller rows, under a token drawn at write time
    rows: list[LogRow] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)
    tags: list[bytes] = field(default_factory=list)


def _check(model: object, version: object) -> None:
    if type(model) is not str or not 0 < len(model) <= MAX_MODEL or "\x00" in model:
        raise RowsRejected(f"model name {model!r:.80} cannot be stored")
    if type(version) is not int or not _INT32[0] <= version < _INT32[1]:
        raise RowsRejected(f"version {version!r:.80} cannot be stored")


def _offset(text: str) -> int | None:
    """A row's place in its request as `request_id` spells it (0, or digits without a leading
    zero, at most 7), else None."""
    if not text.isascii() or not text.isdigit() or len(text) > 7:
        return None
    if text[0] == "0" and text != "0":
        return None
    return int(text)


class _Locator:
    """ids.locate, each request's id parsed once (a request's rows share it): the row's
    request as Located (offset 0) and the row's offset in it."""

    def __init__(self) -> None:
        self._requests: dict[str, ids.Located | None] = {}

    def __call__(self, pid: str) -> tuple[ids.Located, int] | None:
        head, colon, tail = pid.rpartition(":")
        if not colon:
            return None
        requests = self._requests
        if head in requests:
            base = requests[head]
        else:
            base = requests[head] = ids.locate(head + ":0")
        if base is None:
            return None
        offset = _offset(tail)
        if offset is None:
            return None
        return base, offset


def group(rows: Sequence[LogRow]) -> list[Group]:
    """The records a write makes, in the order of their first rows."""
    groups: dict[tuple[str, int, str | None], Group] = {}
    seen: set[tuple[str, int]] = set()
    locate = _Locator()
    for row in rows:
        pid = row["id"]
        if type(pid) is not str:
            raise RowsRejected(f"prediction id {pid!r:.80} is not a string")
        where = locate(pid)
        key = (row["model"], row["version"], None if where is None else where[0].token)
        g = groups.get(key)
        if g is None:
            _check(row["model"], row["version"])
            g = groups[key] = Group(*key)
        if where is None:
            if not 0 < len(pid) <= MAX_ID or "\x00" in pid:
                raise RowsRejected(f"prediction id {pid!r:.80} cannot be stored")
            g.rows.append(row)
            continue
        base, offset = where
        number = base.first + offset
        place = (base.token, number)
        if place in seen:  # the same row twice in a batch: the first stays
            continue
        seen.add(place)
        g.rows.append(row)
        g.numbers.append(number)
        g.firsts.append(base.first)
        g.tags.append(base.tag)
    return list(groups.values())


RECORD_COLUMNS = (
    "model",
    "version",
    "token",
    "first_row",
    "last_row",
    "rows",
    "ts_min",
    "ts_max",
    "row_tags",
    "data",
)


# Ids per INSERT: every row count is its own SQL text, prepared and kept by SQLite's driver
# (128 statements per connection); a few fixed sizes keep that small (249 = 128 + 64 + ...).
STATEMENT_ROWS = (250, 128, 64, 32, 16, 8, 4, 2, 1)


def _statement_rows(n: int) -> Iterator[int]:
    for size in STATEMENT_ROWS:
        while n >= size:
            yield size
            n -= size


class Writer:
    def __init__(self, backend: str) -> None:
        self._mark = "%s" if backend == "postgresql" else "?"
        self._ids: dict[int, str] = {}
        # the driver's own SQL, written once: SQLAlchemy building an INSERT per record cost
        # ~0.3 ms, a third of a 1-row durable write
        self._record_sql = (
            f"INSERT INTO {prediction_batches.name} ({', '.join(RECORD_COLUMNS)}) VALUES "
            f"({', '.join([self._mark] * len(RECORD_COLUMNS))}) "
            "ON CONFLICT (token, first_row) DO NOTHING RETURNING seq"
        )

    def _ids_statement(self, n: int) -> str:
        """INSERT of `n` caller ids, skipping logged ones, returning those it inserted (the
        driver's own SQL: SQLAlchemy compiling a 250-row VALUES cost ~60 us a row)."""
        sql = self._ids.get(n)
        if sql is None:
            group = "(" + ",".join([self._mark] * 4) + ")"
            sql = (
                f"INSERT INTO {prediction_ids.name} (id, model, token, row_n) VALUES "
                + ",".join([group] * n)
                + " ON CONFLICT (id) DO NOTHING RETURNING id"
            )
            self._ids[n] = sql
        return sql

    def write(self, conn: Connection, entries: Sequence[Entry], fresh: bool = False) -> int:
        rows: list[LogRow] = []
        chunks: dict[tuple[str, int, str], list[Chunk]] = {}
        for e in entries:
            if type(e) is Chunk:
                chunks.setdefault((e.model, e.version, e.token), []).append(e)
            else:
                rows.append(e)  # type: ignore[arg-type]
        groups = group(rows)
        tokens = {g.token for g in groups}
        inserted = 0
        as_rows: list[LogRow] = []
        for (model, version, token), some in chunks.items():
            # A chunk that was sent before may be logged already (rows skip what is), and a
            # record of rows and one of chunks under one token would interleave their spans.
            encoded = None if not fresh or token in tokens else chunk.encode(some)
            if encoded is None:
                as_rows += chunk.log_rows(some)
                continue
            _check(model, version)
            if self.insert_record(conn, model, version, token, encoded):
                inserted += encoded.rows
        if as_rows:
            groups = group(as_rows + rows)
        for g in groups:
            if g.token is None:
                inserted += self._write_caller(conn, g)
            else:
                inserted += self._write_generated(conn, g, fresh)
        return inserted

    def _write_generated(self, conn: Connection, g: Group, fresh: bool) -> int:
        """A record of generated rows, less the rows a record of the token holds already: a
        replay, whole or regrouped (a spool file holding two batches, one of them logged
        before its acknowledgement was lost), logs each row once. `fresh` rows were never
        sent before: the look for logged rows is skipped (each query the writer thread makes
        gives up the GIL, and a busy event loop keeps it up to the switch interval: two such
        looks a record made 256-row serving 25 % slower)."""
        assert g.token is not None
        logged = (
            set() if fresh else self._logged_rows(conn, g.token, min(g.numbers), max(g.numbers))
        )
        if logged:
            keep = [n for n, row in enumerate(g.numbers) if row not in logged]
            if not keep:
                return 0
            g.rows = [g.rows[n] for n in keep]
            g.numbers = [g.numbers[n] for n in keep]
            g.firsts = [g.firsts[n] for n in keep]
            g.tags = [g.tags[n] for n in keep]
        data = encoding.encode(g.rows, g.numbers, g.firsts, g.tags)
        keys = encoding.keys(g.numbers, g.tags)
        if self.insert_record(
            conn, g.model, g.version, g.token, _encoded(g.rows, g.numbers, data, keys)
        ):
            return len(g.rows)
        return 0

    def _logged_rows(self, conn: Connection, token: str, lo: int, hi: int) -> set[int]:
        """Rows in [lo, hi] that records of `token` hold: those starting in the span and the
        one starting last before it (two index probes, whatever the token's records)."""
        c = prediction_batches.c
        inside = select(c.row_tags).where(c.token == token, c.first_row.between(lo, hi))
        before = (
            select(c.row_tags, c.last_row)
            .where(c.token == token, c.first_row < lo)
            .order_by(c.first_row.desc())
            .limit(1)
        )
        found = [raw for (raw,) in conn.execute(inside)]
        prior = conn.execute(before).first()
        if prior is not None and prior[1] >= lo:
            found.append(prior[0])
        rows: set[int] = set()
        for raw in found:
            numbers, _ = encoding.read_keys(raw)
            rows.update(int(n) for n in numbers if lo <= n <= hi)
        return rows

    def _write_caller(self, conn: Connection, g: Group) -> int:
        token = ids.new_token()
        unique: dict[str, LogRow] = {}
        for row in g.rows:
            unique.setdefault(row["id"], row)
        rows = list(unique.values())
        pids = list(unique)
        data = encoding.encode(rows, range(len(rows)), ids=pids)  # refused before any SQL
        new: set[str] = set()
        start = 0
        for n in _statement_rows(len(pids)):
            params: list[Any] = []
            for i in range(start, start + n):
                params += (pids[i], g.model, token, i)
            start += n
            new.update(r[0] for r in conn.exec_driver_sql(self._ids_statement(n), tuple(params)))
        keep = [n for n, p in enumerate(pids) if p in new]
        if not keep:
            return 0
        kept = [rows[n] for n in keep]
        if len(keep) < len(rows):  # ids logged before: their rows go
            data = encoding.encode(kept, keep, ids=[pids[n] for n in keep])
        self.insert_record(conn, g.model, g.version, token, _encoded(kept, keep, data))
        return len(kept)

    def insert_record(
        self, conn: Connection, model: str, version: int, token: str, record: Encoded
    ) -> int | None:
        """Insert one record: its seq, or None if a record of this token and first row is
        there already."""
        params = (
            model,
            version,
            token,
            record.first_row,
            record.last_row,
            record.rows,
            record.ts_min,
            record.ts_max,
            record.keys,
            record.data,
        )
        seq = conn.exec_driver_sql(self._record_sql, params).scalar()
        return None if seq is None else int(seq)


def _encoded(
    rows: Sequence[LogRow], numbers: Sequence[int], data: bytes, keys: bytes = b""
) -> Encoded:
    times = [r["ts"] for r in rows]
    return Encoded(data, keys, min(numbers), max(numbers), len(rows), min(times), max(times))
