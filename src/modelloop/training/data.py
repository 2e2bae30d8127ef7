"""Gather: a CSV file, a data set bundled with scikit-learn, or the synthetic generator."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modelloop.training import synthetic
from modelloop.training.errors import DataError

BUILTIN = ("synthetic", "breast_cancer", "wine", "iris", "diabetes")


@dataclass(frozen=True)
class RawData:
    frame: pd.DataFrame
    target: str
    source: str
    sha256: str


def frame_sha256(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def load_csv(path: Path, target: str | None) -> RawData:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"data file {path} is empty")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"data file {path} is not a readable CSV: {first}") from None
    if frame.empty:
        raise DataError(f"data file {path} has a header but no rows")
    if not target:
        raise DataError("--target is required with --data: name the column to predict")
    return RawData(frame, target, str(path), hashlib.sha256(raw).hexdigest())


def _bundled(name: str) -> pd.DataFrame:
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "diabetes": datasets.load_diabetes,
    }
    bunch = loaders[name](as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    if name != "diabetes":
        names = list(bunch.target_names)
        frame["target"] = [str(names[int(i)]) for i in frame["target"]]
    return frame


def load_builtin(name: str, rows: int = 20_000, seed: int = 0) -> RawData:
    if name == "synthetic":
        frame = synthetic.generate(rows, seed)
        return RawData(
            frame, synthetic.TARGET, f"synthetic(rows={rows}, seed={seed})", frame_sha256(frame)
        )
    if name not in BUILTIN:
        raise DataError(f"unknown data set {name!r}; one of {', '.join(BUILTIN)}")
    frame = _bundled(name)
    return RawData(frame, "target", f"sklearn:{name}", frame_sha256(frame))
