"""A logged prediction as the service hands it to the log."""

from collections.abc import Callable
from typing import Any, TypedDict, cast


class LogRow(TypedDict):
    id: str
    ts: float
    model: str
    version: int
    features: dict[str, Any]
    output: dict[str, Any]
    latency_ms: float


# (item index, prediction id, label, model, version) -> the label to store; raises if bad
LabelCheck = Callable[[int, str, Any, str, int], Any]

LOG_COLUMNS = ("id", "ts", "model", "version", "features", "output", "latency_ms")

_LOG_KEYS = frozenset(LOG_COLUMNS)
_ROW_TYPES = (
    ("id", (str,)),
    ("ts", (float, int)),
    ("model", (str,)),
    ("version", (int,)),
    ("features", (dict,)),
    ("output", (dict,)),
    ("latency_ms", (float, int)),
)


def as_log_row(value: Any) -> LogRow | None:
    """`value` (decoded JSON) if it has a log row's keys and types, else None. The log still
    has the last word on values (an id's length, a number's range)."""
    if type(value) is not dict or value.keys() != _LOG_KEYS:
        return None
    if any(type(value[key]) not in types for key, types in _ROW_TYPES):
        return None
    return cast(LogRow, value)
