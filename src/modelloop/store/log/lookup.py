"""Finding logged predictions by id: generated ids by their record, caller ids by their index."""

from collections import defaultdict
from collections.abc import Iterable, Iterator
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
    wanted: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    callers: list[str] = []
    match = ids.CANONICAL.fullmatch
    for pid in dict.fromkeys(pids):
        m = match(pid)  # ids.locate, its tag left to one decode of them all
        if m is None:
            callers.append(pid)
        else:
            token, first, tag, offset = m.groups()
            wanted[token].append((pid, int(first, 36) + int(offset), tag))
    found: dict[str, Found] = {}
    for token, asked in wanted.items():
        found.update(_generated(conn, token, asked))
    found.update(_callers(conn, callers))
    return found


def _generated(
    conn: Connection, token: str, asked: list[tuple[str, int, str]]
) -> Iterator[tuple[str, Found]]:
    """The asked rows of one token that a record holds with the tag the id names: the keys of
    the records in the asked rows' span, matched in bulk."""
    rows = np.fromiter((row for _, row, _ in asked), dtype=np.int64, count=len(asked))
    c = prediction_batches.c
    q = (
        select(c.model, c.version, c.row_tags)
        .where(c.token == token, c.first_row <= int(rows.max()), c.last_row >= int(rows.min()))
        .order_by(c.first_row)
    )
    records = conn.execute(q).all()
    if not records:
        return
    keys = [encoding.read_keys(raw) for _, _, raw in records]
    held = np.concatenate([n for n, _ in keys]).astype(np.int64)
    if not len(held):  # records of caller rows keep no keys
        return
    sizes = np.fromiter((len(n) for n, _ in keys), dtype=np.int64, count=len(keys))
    # records by first row hold rows in runs already in order: a stable sort of them is ~linear
    order = np.argsort(held, kind="stable")
    held = held[order]
    held_tags = np.concatenate([t for _, t in keys])[order]
    record = np.repeat(np.arange(len(keys)), sizes)[order]
    at = np.minimum(np.searchsorted(held, rows), len(held) - 1)
    wanted_tags = ids.tag_values([tag for _, _, tag in asked])
    hit = np.flatnonzero((held[at] == rows) & (held_tags[at] == wanted_tags))
    for i, r in zip(hit.tolist(), record[at[hit]].tolist(), strict=True):
        pid, row, _ = asked[i]
        model, version, _ = records[r]
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
