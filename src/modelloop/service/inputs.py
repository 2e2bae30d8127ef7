"""Check JSON instances against a version's schema and turn them into graph columns."""

import math
from typing import Any

from modelloop.service.errors import Unprocessable
from modelloop.store.metadata import ModelMetadata

FLOAT32_MAX = 3.4028234663852886e38
MAX_STRING = 10_000  # characters in one categorical value
NAN = math.nan


class InputSchema:
    """A version's features in graph order, with their kinds, precomputed for the hot path."""

    def __init__(self, meta: ModelMetadata) -> None:
        self.names = [f.name for f in meta.features]
        self.numeric = [f.kind == "numeric" for f in meta.features]
        self.names_set = frozenset(self.names)
        self.size = len(self.names)

    def _problem(self, index: int, instance: Any) -> Unprocessable:
        if not isinstance(instance, dict):
            return Unprocessable(
                f"instance {index}: expected an object of feature values, got "
                f"{type(instance).__name__}"
            )
        missing = [n for n in self.names if n not in instance]
        if missing:
            return Unprocessable(
                f"instance {index}: missing feature {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; send null for an unknown value"
            )
        unknown = sorted(k for k in instance if k not in self.names_set)
        return Unprocessable(
            f"instance {index}: unknown feature {unknown[0]!r}; the model takes "
            + ", ".join(self.names)
        )

    def columns(self, instances: list[Any]) -> tuple[list[list[Any]], bool]:
        """One list per feature, in graph order, and whether they hold the values as sent
        (but for NaN, which stands for null in a numeric column); raise Unprocessable naming
        the first problem."""
        exact = True
        cols: list[list[Any]] = [[] for _ in self.names]
        pairs = list(zip(self.names, self.numeric, cols, strict=True))
        for index, instance in enumerate(instances):
            if type(instance) is not dict or len(instance) != self.size:
                raise self._problem(index, instance)
            for name, numeric, col in pairs:
                try:
                    value = instance[name]
                except KeyError:
                    raise self._problem(index, instance) from None
                if numeric:
                    t = type(value)
                    if t is float or t is int:
                        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                            raise Unprocessable(
                                f"instance {index}: feature {name!r} value {value!r} is outside "
                                "the float32 range"
                            )
                        col.append(value)
                    elif value is None:
                        col.append(NAN)
                    else:
                        raise Unprocessable(
                            f"instance {index}: feature {name!r} must be a number or null, got "
                            f"{type(value).__name__}"
                        )
                else:
                    if type(value) is str:
                        if len(value) > MAX_STRING:
                            raise Unprocessable(
                                f"instance {index}: feature {name!r} is longer than "
                                f"{MAX_STRING} characters"
                            )
                        col.append(value)
                    elif value is None:
                        col.append("")
                        exact = False
                    elif type(value) is int:
                        col.append(str(value))
                        exact = False
                    elif type(value) is float and value.is_integer():
                        # JSON Schema's integer includes 2.0; orjson reads a JSON integer
                        # past 64 bits as a float too
                        col.append(str(int(value)))
                        exact = False
                    else:
                        raise Unprocessable(
                            f"instance {index}: feature {name!r} must be a string or null, got "
                            f"{type(value).__name__}"
                        )
        return cols, exact
