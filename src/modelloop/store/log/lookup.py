"""Finding logged predictions by id: generated ids by their record, caller ids by their index."""

from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple, TypeVar

import numpy as np
from sqlalchemy import Connection, select

from modelloop.store.log import encoding, ids
from modelloop.store.schema import prediction_batches, prediction_ids

ID_LOOKUP = 500  # ids per IN list
T = TypeVar("T")


class Found(NamedTuple):
    model: str
    version: int
    token: str
    row: int


def padded(values: list[T]) -> list[T]:
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
    """The asked rows of one token that a record holds with the tag the id names: the keys of
    the records in the asked rows' span, matched in bulk."""
    rows = np.fromiter((row for _, row, _ in asked), dtype=np.int64, count=len(asked))
    c = prediction_batches.c
    q = select(c.model, c.version, c.row_tags).where(
        c.token == token, c.first_row <= int(rows.max()), c.last_row >= int(rows.min())
    )
    numbers, tags, which, origin = [], [], [], []
    for n, (model, version, raw) in enumerate(conn.execute(q)):
        held, held_tags = encoding.read_keys(raw)
        numbers.append(held)
        tags.append(held_tags)
        which.append(np.full(len(held), n, dtype=np.int64))
        origin.append((model, version))
    if not numbers:
        return
    held = np.concatenate(numbers).astype(np.int64)
    order = np.argsort(held, kind="stable")
    held = held[order]
    held_tags = np.concatenate(tags)[order]
    record = np.concatenate(which)[order]
    at = np.minimum(np.searchsorted(held, rows), len(held) - 1)
    wanted_tags = np.frombuffer(b"".join(tag for _, _, tag in asked), "<u8")
    hit = (held[at] == rows) & (held_tags[at] == wanted_tags)
    for (pid, row, _), ok, r in zip(asked, hit.tolist(), record[at].tolist(), strict=True):
        if ok:
            model, version = origin[r]
            yield pid, Found(model, version, token, row)


def _callers(conn: Connection, pids: list[str]) -> dict[str, Found]:
    found: dict[str, Found] = {}
    p, b = prediction_ids.c, prediction_batches.c
    for start in range(0, len(pids), ID_LOOKUP):
        chunk = padded(pids[start : start + ID_LOOKUP])
        q = (
            select(p.id, b.model, b.version, p.token, p.row_n)
            .join_from(prediction_ids, prediction_batches, b.token == p.token)
            .where(p.id.in_(chunk))
        )
        found.update((pid, Found(m, v, t, r)) for pid, m, v, t, r in conn.execute(q))
    return found
