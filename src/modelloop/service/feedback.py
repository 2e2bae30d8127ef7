"""Feedback checks: each id by the one id rule, each label against the version that made the
prediction it labels (its task and classes, read from the registry once per version)."""

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from modelloop.service.errors import Unprocessable
from modelloop.service.ids import check_prediction_id
from modelloop.service.models import ModelManager
from modelloop.store.errors import RegistryUnavailable, StoreError
from modelloop.store.metadata import ModelMetadata
from modelloop.store.registry import Registry

MAX_LABEL = 1000  # characters in a string label
CACHED_VERSIONS = 1024  # versions whose label rule is kept (a version never changes)
_SHOWN_CLASSES = 20  # classes listed in an error message, at most
_SHOWN_LABEL = 60  # characters of a bad label's repr in an error message, at most


class VersionUnreadable(Exception):
    """The version that made a prediction cannot be read from the registry."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_LABEL else text[: _SHOWN_LABEL - 1] + "…"


class LabelRule:
    """What a version takes as a label: one of its classes, of the class's JSON type (an
    integer class also as a whole float such as 1.0, stored as the integer), or for a
    regression a finite number (not a boolean), stored as a float."""

    def __init__(self, meta: ModelMetadata) -> None:
        self.regression = meta.task == "regression"
        self.classes = list(meta.classes)
        # (type, value): "1" is not the class 1, nor True the class 1
        self._classes = {(type(c), c): c for c in self.classes}
        self.about = f"model {meta.name!r} version {meta.version}"

    def apply(self, label: Any) -> Any:
        """The label to store, or ValueError saying why `label` is not one."""
        if self.regression:
            if type(label) not in (int, float):
                raise ValueError(f"must be a number ({self.about} is a regression)")
            try:
                value = float(label)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise ValueError(f"must be a finite number ({self.about} is a regression)")
            return value
        key = (type(label), label)
        if type(label) is float and label.is_integer():
            key = (int, int(label))
        found = self._classes.get(key)
        if found is None or type(label) is bool:
            shown = ", ".join(repr(c) for c in self.classes[:_SHOWN_CLASSES])
            more = ", …" if len(self.classes) > _SHOWN_CLASSES else ""
            raise ValueError(
                f"{_shown(label)} is not one of the classes of {self.about}: {shown}{more}"
            )
        return found


class LabelRules:
    """Each version's LabelRule: from a loaded version's metadata when it is loaded, else from
    the registry; kept per (model, version), a version never changes."""

    def __init__(self, registry: Registry, models: ModelManager) -> None:
        self.registry = registry
        self.models = models
        self._rules: OrderedDict[tuple[str, int], LabelRule] = OrderedDict()
        self._lock = threading.Lock()  # rules are looked up in worker threads

    def rule(self, model: str, version: int) -> LabelRule:
        """RegistryUnavailable if the registry is away; VersionUnreadable if it has no such
        version (or one it cannot read)."""
        key = (model, version)
        with self._lock:
            rule = self._rules.get(key)
            if rule is not None:
                self._rules.move_to_end(key)
                return rule
        meta = self._loaded(model, version)
        if meta is None:
            try:
                meta = self.registry.metadata(model, version)
            except RegistryUnavailable:
                raise
            except (StoreError, OSError, ValueError) as e:
                raise VersionUnreadable(
                    f"model {model!r} version {version}, which made the prediction, cannot be "
                    f"read from the registry ({e})"
                ) from None
        rule = LabelRule(meta)
        with self._lock:
            self._rules[key] = rule
            while len(self._rules) > CACHED_VERSIONS:
                self._rules.popitem(last=False)
        return rule

    def _loaded(self, model: str, version: int) -> ModelMetadata | None:
        served = self.models.loaded(model, version)
        return served.metadata if served is not None else None

    def check(self, index: int, pid: str, label: Any, model: str, version: int) -> Any:
        """A PredictionLog.add_feedback check: the label to store, or Unprocessable naming
        the item (index and id) and why."""
        try:
            rule = self.rule(model, version)
        except VersionUnreadable as e:
            raise Unprocessable(
                f"item {index} (id {pid!r}): its label cannot be checked: {e}"
            ) from None
        try:
            return rule.apply(label)
        except ValueError as e:
            raise Unprocessable(f"item {index} (id {pid!r}): label {e}") from None


def check_items(items: Sequence[tuple[str, Any]]) -> None:
    """What can be checked without the log: every id by the id rule (generated ids allowed),
    every string label's length. Unprocessable naming the first bad item."""
    for index, (pid, label) in enumerate(items):
        check_prediction_id(pid, f"item {index}: id", generated=True)
        if type(label) is str and len(label) > MAX_LABEL:
            raise Unprocessable(
                f"item {index} (id {pid!r}): label must be at most {MAX_LABEL} characters, "
                f"got {len(label)}"
            )
