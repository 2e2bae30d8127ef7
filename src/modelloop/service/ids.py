"""Prediction ids: generated ones unguessable, the caller's own in a namespace of their own.

A generated id is `~<token>:<row>`: one token of 16 random bytes (url-safe base64) per
request, so nobody can claim the ids of a request that has not happened yet. `~` starts every
generated id and no caller id, so the two never collide. Every id is checked by one rule,
`check_prediction_id`: v1 `ids`, the OIP request `id` (logged as `<id>:<row>`) and feedback.
"""

import base64
import os

from modelloop.service.errors import Unprocessable

MAX_ID = 128  # characters in one prediction id (the log's id column holds this many)
GENERATED = "~"  # the first character of every generated id, and of no caller id


def _token() -> str:
    return GENERATED + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class IdMaker:
    """Generated ids: one urandom call per request, not per row."""

    def request(self) -> str:
        """A request's id (OIP `id`); its rows are `<id>:<row>`."""
        return _token()

    def take(self, n: int) -> list[str]:
        token = _token()
        if n == 1:  # the common case, without a comprehension
            return [token + ":0"]
        return [f"{token}:{i}" for i in range(n)]


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
