"""Export: the fitted pipeline as ONNX (one named input per feature), and the parity check."""

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from modelloop.store.metadata import Feature, Parity, Task
from modelloop.training.errors import ParityError

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBA_TOLERANCE = 1e-4
REL_TOLERANCE = 1e-4


def to_onnx(pipeline: Any, features: list[Feature], task: Task) -> bytes:
    initial = [
        (f.name, FloatTensorType([None, 1]) if f.kind == "numeric" else StringTensorType([None, 1]))
        for f in features
    ]
    options = {id(pipeline.steps[-1][1]): {"zipmap": False}} if task == "classification" else None
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands protobuf numpy booleans for HistGradientBoosting's tree
        # attributes; protobuf 6.33 stores them as 0/1 but warns (a DeprecationWarning per
        # tree). Under an error filter (pytest here, PYTHONWARNINGS=error anywhere) the export
        # would fail, so this one notice is silenced. protobuf 7 rejects them: pinned < 7.
        warnings.filterwarnings(
            "ignore", message=r".*Expected an int, got a boolean", category=DeprecationWarning
        )
        # A fixed graph name: skl2onnx's default is a random uuid, which would make the same
        # data and seed give a different model.onnx (and sha256) on every run.
        graph = convert_sklearn(
            pipeline,
            name="modelloop",
            initial_types=initial,
            options=options,
            target_opset=TARGET_OPSET,
        )
    return bytes(graph.SerializeToString())


def onnx_feeds(frame: pd.DataFrame, features: list[Feature]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for f in features:
        col = frame[f.name]
        if f.kind == "numeric":
            feeds[f.name] = col.to_numpy(dtype=np.float32).reshape(-1, 1)
        else:
            feeds[f.name] = col.astype(str).to_numpy(dtype=object).reshape(-1, 1)
    return feeds


@dataclass
class OnnxModel:
    """An ONNX graph run on data frames; used for parity and to score a champion."""

    session: ort.InferenceSession
    features: list[Feature]
    task: Task

    @classmethod
    def load(cls, data: bytes, features: list[Feature], task: Task) -> "OnnxModel":
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return cls(session, features, task)

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels, probabilities) for classification, (values, None) for regression."""
        out = self.session.run(None, onnx_feeds(frame, self.features))
        if self.task == "classification":
            return np.asarray(out[0]).ravel(), np.asarray(out[1], dtype=np.float64)
        return np.asarray(out[0], dtype=np.float64).ravel(), None


def _worst(diff: npt.NDArray[np.float64], n: int = 3) -> str:
    rows = np.argsort(diff.max(axis=1) if diff.ndim == 2 else diff)[::-1][:n]
    flat = diff.max(axis=1) if diff.ndim == 2 else diff
    return ", ".join(f"row {int(i)}: {flat[i]:.3g}" for i in rows)


def check_parity(onnx_model: OnnxModel, pipeline: Any, frame: pd.DataFrame) -> Parity:
    """Compare ONNX with scikit-learn on `frame`; raise ParityError beyond the tolerances."""
    got, got_proba = onnx_model.predict(frame)
    if onnx_model.task == "classification":
        want = np.asarray(pipeline.predict(frame))
        want_proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
        assert got_proba is not None
        differ = got.astype(str) != want.astype(str)
        # A row whose two best classes tie (within the tolerance) may go either way.
        top2 = np.sort(want_proba, axis=1)[:, -2:] if want_proba.shape[1] > 1 else want_proba
        tied = (top2[:, -1] - top2[:, 0]) <= PROBA_TOLERANCE if top2.shape[1] > 1 else differ
        mismatched = np.flatnonzero(differ & ~tied)
        diff = np.abs(got_proba - want_proba)
        max_abs = float(diff.max()) if diff.size else 0.0
        if mismatched.size or max_abs > PROBA_TOLERANCE:
            raise ParityError(
                f"ONNX export differs from scikit-learn on {mismatched.size} labels "
                f"(rows {mismatched[:5].tolist()}) and by up to {max_abs:.3g} in probability "
                f"(tolerance {PROBA_TOLERANCE}); worst rows: {_worst(diff)}"
            )
        return Parity(
            rows=len(frame),
            label_mismatches=int(differ.sum()),
            max_abs_diff=max_abs,
            max_rel_diff=max_abs,
        )
    want = np.asarray(pipeline.predict(frame), dtype=np.float64).ravel()
    diff = np.abs(got - want)
    rel = diff / np.maximum(np.abs(want), 1.0)
    max_rel = float(rel.max()) if rel.size else 0.0
    if max_rel > REL_TOLERANCE:
        raise ParityError(
            f"ONNX export differs from scikit-learn by up to {max_rel:.3g} relative "
            f"(tolerance {REL_TOLERANCE}); worst rows: {_worst(rel)}"
        )
    return Parity(
        rows=len(frame),
        label_mismatches=0,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        max_rel_diff=max_rel,
    )
