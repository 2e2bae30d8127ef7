"""Helpers for the store tests: valid metadata, reference profiles, child interpreters."""

import os
import subprocess
import sys
import time
from pathlib import Path

from modelloop.store.metadata import (
    DataInfo,
    Feature,
    ModelMetadata,
    NumericProfile,
    Parity,
    ReferenceProfile,
)

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def make_metadata(name: str = "m") -> ModelMetadata:
    return ModelMetadata(
        name=name,
        version=0,
        task="classification",
        features=[Feature(name="x", kind="numeric")],
        outputs=["label", "probabilities"],
        classes=["no", "yes"],
        estimator="logreg",
        seed=0,
        data=DataInfo(
            source="test",
            sha256="0" * 64,
            target="y",
            rows_raw=10,
            rows_clean=10,
            rows_train=6,
            rows_validation=2,
            rows_test=2,
        ),
        metrics={"accuracy": 0.5},
        primary_metric="accuracy",
        parity=Parity(rows=2, label_mismatches=0, max_abs_diff=0.0, max_rel_diff=0.0),
        libraries={"test": "1"},
        created_at=time.time(),
        onnx_sha256="",
    )


def make_reference() -> ReferenceProfile:
    profile = NumericProfile(
        edges=[0.5], counts=[3, 3], centroids=[0.0, 1.0], missing=0, mean=0.5, std=0.5
    )
    return ReferenceProfile(rows=6, numeric={"x": profile}, categorical={}, score=profile)


def python_env() -> dict[str, str]:
    """The environment for child interpreters: our sources importable, no stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def spawn_python(code: str, *args: str, **kwargs: object) -> "subprocess.Popen[str]":
    """Start a real child interpreter running `code` with `args` in sys.argv[1:]."""
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-c", code, *args],
        env=python_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )
