"""Finding logged predictions by id: generated ids by their record, caller ids by their index."""

from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import Connection, select

from modelloop.store.log import encoding, ids
from modelloop.store.schema import prediction_batches, prediction_ids

ID_LOOKUP = 500  # ids per IN list


class Found(NamedTuple):
    model: str
    version: int
    token: str
    row: int


def _padded(values: list[str]) -> list[str]:
    """`values` with its last one repeated up to the next power of two (at most ID_LOOKUP): an
    IN list is one SQL text per length, each kept prepared by SQLite's driver (up to 128 per
    connection, ~100 KiB at 500 ids), so lookups use 10 lengths rather than 500."""
    size = min(1 << (len(values) - 1).bit_length(), ID_LOOKUP)
    return values + [values[-1]] * (size - len(values))


def find(conn: Connection, pids: Iterable[str]) -> dict[str, Found]:
    """Where each logged prediction of `pids` is (ids not in the log are left out)."""
    wanted: dict[str, list[tuple[str, int, bytes]]] = defaultdict(list)
    callers: list[str] = []
    for pid in dict.fromkeys(pids):
        where = ids.locate(pid)
        if where is None:
            callers.append(pid)
        else:
            wanted[where.token].append((pid, where.row, where.tag))
    found: dict[str, Found] = {}
    for token, asked in wanted.items():
        found.update(_generated(conn, token, asked))
    found.update(_callers(conn, callers))
    return found


def _generated(
    conn: Connection, token: str, asked: list[tuple[str, int, bytes]]
) -> Iterable[tuple[str, Found]]:
    """The asked rows of one token that a record holds with the tag the id names."""
    rows = [row for _, row, _ in asked]
    c = prediction_batches.c
    q = select(c.model, c.version, c.data).where(
        c.token == token, c.first_row <= max(rows), c.last_row >= min(rows)
    )
    held: dict[int, tuple[bytes, str, int]] = {}
    for model, version, data in conn.execute(q):
        batch = encoding.decode(data, fields=(0, 2))  # row, tag
        numbers = batch.column(0).to_pylist()
        tags = batch.column(1).to_pylist()
        for number, tag in zip(numbers, tags, strict=True):
            held[number] = (tag, model, version)
    for pid, row, tag in asked:
        hit = held.get(row)
        if hit is not None and hit[0] == tag:
            yield pid, Found(hit[1], hit[2], token, row)


def _callers(conn: Connection, pids: list[str]) -> dict[str, Found]:
    found: dict[str, Found] = {}
    p, b = prediction_ids.c, prediction_batches.c
    for start in range(0, len(pids), ID_LOOKUP):
        chunk = _padded(pids[start : start + ID_LOOKUP])
        q = (
            select(p.id, b.model, b.version, p.token, p.row_n)
            .join_from(prediction_ids, prediction_batches, b.token == p.token)
            .where(p.id.in_(chunk))
        )
        found.update((pid, Found(m, v, t, r)) for pid, m, v, t, r in conn.execute(q))
    return found
