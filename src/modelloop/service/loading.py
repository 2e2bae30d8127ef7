"""Load a registry version into an ONNX Runtime session and prove it answers before it serves."""

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from modelloop.store.errors import RegistryUnavailable, StoreError
from modelloop.store.metadata import ModelMetadata
from modelloop.store.registry import Registry


class LoadFailed(Exception):
    """A version could not be loaded or failed its smoke prediction; it must not serve."""


@dataclass(frozen=True)
class LoadedVersion:
    metadata: ModelMetadata
    session: ort.InferenceSession
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def new_session(data: bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def smoke_feeds(meta: ModelMetadata) -> dict[str, np.ndarray]:
    """One typical row: zeros for numbers, the first seen category (or missing) for categories."""
    feeds: dict[str, np.ndarray] = {}
    for f in meta.features:
        if f.kind == "numeric":
            feeds[f.name] = np.zeros((1, 1), dtype=np.float32)
        else:
            feeds[f.name] = np.array([[f.categories[0] if f.categories else ""]], dtype=object)
    return feeds


def load_version(registry: Registry, model: str, version: int, threads: int = 1) -> LoadedVersion:
    """Read, hash-check, load and smoke-test a version; raise LoadFailed on any failure."""
    try:
        meta = registry.metadata(model, version)
        data = registry.onnx_bytes(model, version)
    except RegistryUnavailable:
        raise  # the store is away, the version may be fine: the caller retries later
    except (StoreError, OSError, ValueError) as e:
        raise LoadFailed(f"{model} v{version}: {e}") from e
    return load_bytes(meta, data, threads)


def load_bytes(meta: ModelMetadata, data: bytes, threads: int = 1) -> LoadedVersion:
    """Load and smoke-test a version already read (and hash-checked); LoadFailed if bad."""
    model, version = meta.name, meta.version
    try:
        session = new_session(data, threads)
    except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
        raise LoadFailed(f"{model} v{version}: ONNX Runtime cannot load model.onnx: {e}") from e
    inputs = tuple(i.name for i in session.get_inputs())
    if sorted(inputs) != sorted(meta.feature_names):
        raise LoadFailed(
            f"{model} v{version}: graph inputs {sorted(inputs)} do not match the metadata's "
            f"features {sorted(meta.feature_names)}"
        )
    outputs = tuple(o.name for o in session.get_outputs())
    try:
        result = session.run(None, smoke_feeds(meta))
    except Exception as e:
        raise LoadFailed(f"{model} v{version}: smoke prediction failed: {e}") from e
    expected = 2 if meta.task == "classification" else 1
    if len(result) < expected or np.asarray(result[0]).shape[0] != 1:
        raise LoadFailed(f"{model} v{version}: smoke prediction returned an unexpected shape")
    if meta.task == "classification":
        proba = np.asarray(result[1], dtype=np.float64)
        if proba.shape != (1, len(meta.classes)) or not np.all(np.isfinite(proba)):
            raise LoadFailed(
                f"{model} v{version}: smoke prediction gave probabilities of shape {proba.shape} "
                f"for {len(meta.classes)} classes"
            )
    return LoadedVersion(meta, session, inputs, outputs)
