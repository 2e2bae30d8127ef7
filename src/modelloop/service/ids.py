"""Prediction ids: generated ones unguessable and naming their log record, the caller's own in
a namespace of their own.

A generated id is `~<token>.<first>.<tag>:<row>` (the format: store/log/ids.py): the rows of
one process are numbered under a random token (a new one every TOKEN_ROWS rows), and each
request draws a random tag, so nobody can claim the ids of a request that has not happened yet
or name a neighbour's. `~` starts every generated id and no caller id, so the two never collide.
Every id is checked by one rule, `check_prediction_id`: v1 `ids`, the OIP request `id` (logged
as `<id>:<row>`) and feedback.
"""

import os
from typing import NamedTuple

from modelloop.service.errors import Unprocessable
from modelloop.store.log import ids as log_ids

MAX_ID = 128  # characters in one prediction id (the log's id column holds this many)
GENERATED = log_ids.GENERATED  # the first character of every generated id, and of no caller id


POOL_TAGS = 512  # tags drawn per urandom call


class Block(NamedTuple):
    """A request's generated ids: its rows are numbered `first`.. under `token`."""

    token: str
    first: int
    tag: bytes  # the tag's 8 bytes
    id: str


class IdMaker:
    """Generated ids. Used on the event loop only.

    The tags' random bytes are drawn POOL_TAGS at a time: os.urandom releases the GIL, and
    a request that gives it up while the log writer's thread runs waits for that thread
    (the interpreter's switch interval), which cost durable mode, whose writer runs for every
    request, 20 % of its 1-row throughput with one call per request."""

    def __init__(self) -> None:
        self._token = log_ids.new_token()
        self._next = 0
        self._pool = b""
        self._at = 0

    def _tag(self) -> bytes:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(8 * POOL_TAGS), 0
        at = self._at
        self._at = at + 8
        return self._pool[at : at + 8]

    def block(self, n: int) -> Block:
        """The ids of a request of `n` rows: `block.id` (the OIP `id`), its rows `<id>:<row>`."""
        if self._next + n > log_ids.TOKEN_ROWS:
            self._token, self._next = log_ids.new_token(), 0
        tag = self._tag()
        first = self._next
        self._next += n
        return Block(
            self._token, first, tag, log_ids.request_id(self._token, first, log_ids.tag_of(tag))
        )

    def request(self, n: int) -> str:
        return self.block(n).id

    def take(self, n: int) -> list[str]:
        return row_ids(self.request(n), n)


def row_ids(rid: str, n: int) -> list[str]:
    if n == 1:  # the common case, without a comprehension
        return [rid + ":0"]
    return [f"{rid}:{i}" for i in range(n)]


def check_prediction_id(
    value: object, where: str, *, suffix: int = 0, generated: bool = False
) -> str:
    """`value` if it may be a prediction id, else Unprocessable naming `where`.

    1 to MAX_ID characters (`suffix` of them taken by a `:<row>` the id gets when logged),
    printable (`str.isprintable`: no control, format, surrogate, private-use or unassigned
    character, no whitespace but the space; checked in C), no "," (OIP lists ids joined by
    it), and not starting with GENERATED unless it names a generated id (`generated`, as
    feedback does)."""
    limit = MAX_ID - suffix
    if type(value) is not str or not 0 < len(value) <= limit:
        raise Unprocessable(f"{where} must be a string of 1 to {limit} characters")
    if not value.isprintable() or "," in value:
        raise Unprocessable(
            f"{where} must not hold a control character (or another unprintable one) or a comma"
        )
    if value[0] == GENERATED and not generated:
        raise Unprocessable(f"{where} must not start with {GENERATED!r}: generated ids do")
    return value
