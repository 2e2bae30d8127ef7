"""Clean: drop rows that cannot be used, decide feature kinds, coerce types, say what changed."""

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from modelloop.store.metadata import Feature, Task
from modelloop.training.errors import ConfigError, DataError

MIN_ROWS = 30
MAX_CLASSES_FOR_INT_TARGET = 20
_NUMERIC_SHARE = 0.9  # an object column this share parseable as numbers is a numeric column


@dataclass
class CleanData:
    frame: pd.DataFrame  # features (float64 rounded to float32, or str with "" for missing)
    target: pd.Series
    features: list[Feature]
    task: Task
    rows_raw: int
    dropped: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


_NAME_CHARS = re.compile(r"[^A-Za-z0-9_]+")


def onnx_name(column: str) -> str:
    """A feature's name as an ONNX input: letters, digits and '_', not starting with a digit."""
    name = _NAME_CHARS.sub("_", column.strip()).strip("_") or "feature"
    return f"f_{name}" if name[0].isdigit() else name


def _is_missing(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype(str).str.strip() == "")


def _infer_task(target: pd.Series) -> Task:
    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification"
    values = target.to_numpy(dtype=float)
    if np.all(values == np.round(values)) and target.nunique() <= MAX_CLASSES_FOR_INT_TARGET:
        return "classification"
    return "regression"


def _numeric(name: str, s: pd.Series, forced: bool) -> pd.Series:
    parsed = pd.to_numeric(s, errors="coerce")
    bad = parsed.isna() & ~_is_missing(s)
    if bad.any():
        examples = ", ".join(f"row {i}: {v!r}" for i, v in s[bad].head(3).items())
        how = "it was named numeric" if forced else "most of its values are numbers"
        raise DataError(
            f"column {name!r} is numeric ({how}) but {int(bad.sum())} values do not parse as "
            f"numbers ({examples}); fix them or pass --categorical {name}"
        )
    values = parsed.to_numpy(dtype=np.float64)
    finite = values[~np.isnan(values)]
    if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
        raise DataError(f"column {name!r} has values beyond the float32 range (±3.4e38)")
    if np.isinf(values).any():
        raise DataError(f"column {name!r} has infinite values")
    # The served graph takes float32: fit on exactly the values it will see.
    return pd.Series(values.astype(np.float32).astype(np.float64), index=s.index, name=name)


def _looks_numeric(s: pd.Series) -> bool:
    present = s[~_is_missing(s)]
    if present.empty:
        return False
    return bool(pd.to_numeric(present, errors="coerce").notna().mean() >= _NUMERIC_SHARE)


def clean(
    frame: pd.DataFrame,
    target: str,
    task: Task | None = None,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
) -> CleanData:
    frame = frame.rename(columns=lambda c: str(c).strip())
    if frame.columns.duplicated().any():
        dupes = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"duplicate column names: {', '.join(dupes)}")
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not found; columns are: {', '.join(map(str, frame.columns))}"
        )
    forced_cat = set(categorical or [])
    forced_num = set(numeric or [])
    for name in sorted((forced_cat | forced_num) - set(frame.columns)):
        raise ConfigError(f"column {name!r} named in an option is not in the data")
    if forced_cat & forced_num:
        both = sorted(forced_cat & forced_num)
        raise ConfigError(f"columns named both categorical and numeric: {both}")
    if len(frame.columns) < 2:
        raise DataError("the data has no feature columns besides the target")
    rows_raw = len(frame)
    dropped: dict[str, int] = {}

    no_target = _is_missing(frame[target])
    if no_target.any():
        dropped["missing target"] = int(no_target.sum())
        frame = frame[~no_target]
    dup = frame.duplicated()
    if dup.any():
        dropped["exact duplicate"] = int(dup.sum())
        frame = frame[~dup]
    frame = frame.reset_index(drop=True)
    if len(frame) < MIN_ROWS:
        raise DataError(f"only {len(frame)} usable rows after cleaning; need at least {MIN_ROWS}")

    y = frame[target]
    task = task or _infer_task(y)
    if task == "classification":
        if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y):
            values = y.to_numpy(dtype=float)
            y = (
                pd.Series(values.astype(np.int64), name=target)
                if np.all(values == np.round(values))
                else y.astype(str)
            )
        else:
            y = y.astype(str).str.strip()
        if y.nunique() < 2:
            raise DataError(
                f"target {target!r} has a single class ({y.iloc[0]!r}); "
                "classification needs at least two"
            )
    else:
        parsed = pd.to_numeric(y, errors="coerce")
        if parsed.isna().any():
            raise DataError(f"target {target!r} is not numeric; regression needs numbers")
        y = parsed.astype(np.float64)

    features: list[Feature] = []
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        if name == target:
            continue
        s = frame[name]
        if _is_missing(s).all():
            raise DataError(f"column {name!r} has no values (all missing): drop it or fill it in")
        is_cat = name in forced_cat or (
            name not in forced_num
            and not pd.api.types.is_numeric_dtype(s)
            and not _looks_numeric(s)
        )
        if pd.api.types.is_bool_dtype(s) and name not in forced_num:
            is_cat = True
        if is_cat:
            text = s.astype(object).where(~_is_missing(s), "").astype(str).str.strip()
            out[name] = text
            cats = sorted(c for c in text.unique() if c != "")
            features.append(Feature(name=name, kind="categorical", categories=cats))
        else:
            out[name] = _numeric(name, s, forced=name in forced_num)
            features.append(Feature(name=name, kind="numeric"))
    renamed = {f.name: onnx_name(f.name) for f in features if onnx_name(f.name) != f.name}
    names = [renamed.get(f.name, f.name) for f in features]
    if len(set(names)) != len(names):
        raise DataError(
            "feature names collide once made ONNX-safe (letters, digits, '_'): rename columns "
            + ", ".join(f"{a!r}" for a in renamed)
        )
    features = [f.model_copy(update={"name": n}) for f, n in zip(features, names, strict=True)]
    x = pd.DataFrame(out).rename(columns=renamed)
    return CleanData(
        frame=x,
        target=y.reset_index(drop=True),
        features=features,
        task=task,
        rows_raw=rows_raw,
        dropped=dropped,
        renamed=renamed,
    )
