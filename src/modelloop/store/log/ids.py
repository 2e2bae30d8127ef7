"""Generated prediction ids: each names the log record that holds it.

`~<token>.<first>.<tag>:<i>`: the i-th row of a request whose first row is row `first`
(base 36) of the rows the service numbered under `token` (16 url-safe characters, 12 random
bytes, rolled over every TOKEN_ROWS rows); `tag` (11 url-safe characters, 8 random bytes) is
drawn per request and kept in the record, so knowing one's own id tells nothing of the ids of
the rows beside it. The log finds a generated id's record by (token, row), without an index row
per prediction; caller ids (which never start with `~`) have an index of their own.

Ids of schema 2 (`~<22 characters>:<i>`, no dots) are not generated ids in this sense: the
upgrade indexes them like caller ids.
"""

import base64
import binascii
import os
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

GENERATED = "~"  # the first character of every generated id, and of no caller id
TOKEN_CHARS = 16
TAG_CHARS = 11
TOKEN_ROWS = 1 << 20  # rows numbered under one token


class Position(NamedTuple):
    token: str
    row: int
    tag: str


def new_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


def new_tag() -> str:
    return tag_of(os.urandom(8))


def tag_of(raw: bytes) -> str:
    """The tag of 8 random bytes."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def request_id(token: str, first: int, tag: str) -> str:
    """A request's id; its rows are `<id>:<i>`."""
    return f"{GENERATED}{token}.{_base36(first)}.{tag}"


def parse(pid: str) -> Position | None:
    """Where a generated id's row is, or None if `pid` is not a generated id."""
    if not pid.startswith(GENERATED):
        return None
    head, colon, index = pid.rpartition(":")
    parts = head[1:].split(".")
    if not colon or len(parts) != 3 or not index.isdigit() or len(index) > 7:
        return None
    token, first, tag = parts
    if len(token) != TOKEN_CHARS or len(tag) != TAG_CHARS or not 0 < len(first) <= 5:
        return None
    try:
        row = int(first, 36) + int(index)
    except ValueError:
        return None
    return Position(token, row, tag)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if n == 0:
        return "0"
    out = []
    while n:
        n, d = divmod(n, 36)
        out.append(digits[d])
    return "".join(reversed(out))


class Located(NamedTuple):
    """A generated id spelled the one way `request_id` spells it: its request's first row,
    the row's place in the request, and the tag as its 8 bytes."""

    token: str
    first: int
    offset: int  # the row's place in its request
    tag: bytes

    @property
    def row(self) -> int:
        return self.first + self.offset


# A generated id in canonical spelling: no leading zeros, and a tag whose last character
# carries no bits beyond its 8 bytes (the low 2 bits of its sextet are 0).
CANONICAL = re.compile(
    r"~([A-Za-z0-9_-]{16})\.(0|[1-9a-z][0-9a-z]{0,4})\.([A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]):(0|[1-9][0-9]{0,6})"
)


_STANDARD = str.maketrans("-_", "+/")  # url-safe base64 to the standard alphabet


def locate(pid: str) -> Located | None:
    """Where a generated id's row is, if `pid` is one in the canonical spelling (the spelling
    the log gives back); any other id, `~`-led or not, is indexed like a caller's."""
    m = CANONICAL.fullmatch(pid)
    if m is None:
        return None
    token, first, tag, offset = m.groups()
    raw = binascii.a2b_base64((tag + "=").translate(_STANDARD))
    return Located(token, int(first, 36), int(offset), raw)


def tag_values(tags: Sequence[str]) -> npt.NDArray[np.uint64]:
    """The 8 bytes of each canonical tag (as `locate` reads them), as little-endian uint64, in
    one base64 decode: a tag and an `A` (a zero sextet) are 12 characters, 9 bytes, the last
    one 0 (a canonical tag's last sextet ends in two zero bits)."""
    if not tags:
        return np.zeros(0, dtype="<u8")
    text = "A".join(tags) + "A"
    raw = binascii.a2b_base64(text.translate(_STANDARD))
    nine = np.frombuffer(raw, np.uint8).reshape(len(tags), 9)
    return np.ascontiguousarray(nine[:, :8]).view("<u8").ravel()


def tag_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
