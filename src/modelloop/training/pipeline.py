"""The training pipeline: gather, clean, prepare, train, evaluate, export, publish.

`modelloop train` runs it once; the trainer worker runs it for each retrain job.
"""

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

import modelloop
from modelloop.store.metadata import DataInfo, ModelMetadata, Task, Trigger
from modelloop.store.names import check_model_name
from modelloop.store.registry import Registry
from modelloop.training import evaluate
from modelloop.training.clean import CleanData, clean
from modelloop.training.data import RawData, load_builtin, load_csv
from modelloop.training.estimation import build_estimation
from modelloop.training.estimators import DEFAULT_ESTIMATOR, estimator_spec
from modelloop.training.export import OnnxModel, check_parity, to_onnx
from modelloop.training.prepare import Splits, preprocessor, split
from modelloop.training.reference import build_reference

PromotePolicy = Literal["auto", "always", "never"]
Progress = Callable[[str], None]
STAGES = ("gather", "clean", "prepare", "train", "evaluate", "export", "publish")


@dataclass(frozen=True)
class TrainRequest:
    model: str = "default"
    dataset: str = "synthetic"
    data: Path | None = None
    target: str | None = None
    task: Task | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    estimator: str = DEFAULT_ESTIMATOR
    seed: int = 0
    rows: int = 20_000
    promote: PromotePolicy = "auto"
    trigger: Trigger = "manual"
    actor: str = "cli"


@dataclass
class Fitted:
    pipeline: Pipeline
    params: dict[str, Any]
    validation: dict[str, float]  # params (as text) -> validation score
    held_out: Pipeline | None = None  # the best params fitted on train only (never saw val)


@dataclass
class TrainResult:
    metadata: ModelMetadata
    promoted: bool
    decision: str
    evaluation: evaluate.Evaluation
    champion: dict[str, Any] | None
    timings: dict[str, float] = field(default_factory=dict)
    pipeline: Pipeline | None = None  # the fitted scikit-learn pipeline that was exported


class _Stages:
    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        detail: list[str] = []
        start = time.perf_counter()
        yield detail
        elapsed = time.perf_counter() - start
        self.timings[name] = elapsed
        if self.progress is not None:
            n = STAGES.index(name) + 1
            text = "; ".join(detail)
            self.progress(f"[{n}/{len(STAGES)}] {name:<9} {elapsed:7.2f} s  {text}")


def check_registry_writable(registry: Registry) -> None:
    registry.check_writable()


def gather(req: TrainRequest) -> RawData:
    if req.data is not None:
        return load_csv(req.data, req.target)
    return load_builtin(req.dataset, rows=req.rows, seed=req.seed)


def _predict_all(pipeline: Pipeline, x: pd.DataFrame, task: Task) -> tuple[Any, Any]:
    if task == "classification":
        return pipeline.predict(x), pipeline.predict_proba(x)
    return pipeline.predict(x), None


def _score(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, task: Task) -> evaluate.Evaluation:
    pred, proba = _predict_all(pipeline, x, task)
    if task == "classification":
        return evaluate.classification(y.tolist(), pred.tolist(), proba, pipeline.classes_.tolist())
    return evaluate.regression(y, pred)


def fit(
    data: CleanData,
    splits: Splits,
    estimator: str,
    seed: int,
    weights: np.ndarray | None = None,
) -> Fitted:
    """Pick hyperparameters on the validation split, then refit on train + validation.

    `weights`, when given, are sample weights aligned with train + validation rows.
    """
    spec = estimator_spec(estimator, data.task)
    metric = evaluate.PRIMARY[data.task]
    best: tuple[float, dict[str, Any], Pipeline] | None = None
    scores: dict[str, float] = {}
    n_train = len(splits.x_train)
    for params in spec.grid:
        pipe = Pipeline(
            [
                ("prepare", preprocessor(data.features, spec.needs_scaling)),
                ("estimator", spec.build(data.task, seed, params)),
            ]
        )
        fit_kw = {} if weights is None else {"estimator__sample_weight": weights[:n_train]}
        pipe.fit(splits.x_train, splits.y_train, **fit_kw)
        value = _score(pipe, splits.x_val, splits.y_val, data.task).metrics[metric]
        assert value is not None
        scores[str(params)] = value
        if best is None or evaluate.is_better(metric, value, best[0]):
            best = (value, params, pipe)
    assert best is not None
    final = Pipeline(
        [
            ("prepare", preprocessor(data.features, spec.needs_scaling)),
            ("estimator", spec.build(data.task, seed, best[1])),
        ]
    )
    x_all = pd.concat([splits.x_train, splits.x_val])
    y_all = pd.concat([splits.y_train, splits.y_val])
    final.fit(x_all, y_all, **({} if weights is None else {"estimator__sample_weight": weights}))
    return Fitted(final, best[1], scores, best[2])


def libraries() -> dict[str, str]:
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "modelloop": modelloop.__version__,
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def decide_promotion(
    registry: Registry,
    model: str,
    policy: PromotePolicy,
    data: CleanData,
    splits: Splits,
    ev: evaluate.Evaluation,
) -> tuple[bool, str, dict[str, Any] | None]:
    """Whether the new version should serve, why, and the champion's numbers if any."""
    if policy == "never":
        return False, "--promote never", None
    champion = registry.active(model)
    if policy == "always":
        return True, "--promote always", None
    if champion is None:
        return True, "no active version yet", None
    meta = registry.metadata(model, champion)
    metric = evaluate.PRIMARY[data.task]
    new_value = ev.metrics[metric]
    assert new_value is not None
    same_schema = meta.task == data.task and [(f.name, f.kind) for f in meta.features] == [
        (f.name, f.kind) for f in data.features
    ]
    if same_schema:
        runner = OnnxModel.load(registry.onnx_bytes(model, champion), meta.features, meta.task)
        pred, proba = runner.predict(splits.x_test)
        if data.task == "classification":
            assert proba is not None
            champ_ev = (
                evaluate.classification(splits.y_test.tolist(), pred.tolist(), proba, meta.classes)
                if len(meta.classes) == proba.shape[1]
                else evaluate.Evaluation(meta.metrics)
            )
        else:
            champ_ev = evaluate.regression(splits.y_test, pred)
        basis = "on this test split"
    else:
        champ_ev = evaluate.Evaluation(meta.metrics)
        basis = "on its own test split (schemas differ)"
    old_value = champ_ev.metrics.get(metric)
    champ = {"version": champion, "metrics": champ_ev.metrics, "basis": basis}
    if old_value is None:
        return True, f"v{champion} has no {metric} to compare with", champ
    if evaluate.is_better(metric, new_value, old_value):
        return True, f"{metric} {new_value:.4f} beats v{champion}'s {old_value:.4f} {basis}", champ
    return (
        False,
        f"{metric} {new_value:.4f} does not beat v{champion}'s {old_value:.4f} {basis}",
        champ,
    )


def run_training(
    req: TrainRequest,
    registry: Registry,
    progress: Progress | None = None,
    parent_version: int | None = None,
) -> TrainResult:
    check_model_name(req.model)
    check_registry_writable(registry)
    stages = _Stages(progress)
    with stages.stage("gather") as d:
        raw = gather(req)
        d.append(f"{raw.source}: {len(raw.frame)} rows x {raw.frame.shape[1]} columns")
    with stages.stage("clean") as d:
        data = clean(raw.frame, raw.target, req.task, list(req.categorical), list(req.numeric))
        kinds = [f.kind for f in data.features]
        d.append(
            f"{len(data.frame)} rows kept, {kinds.count('numeric')} numeric and "
            f"{kinds.count('categorical')} categorical features, {data.task}"
        )
        d.extend(f"dropped {n} ({why})" for why, n in data.dropped.items())
        if data.renamed:
            d.append(f"renamed {len(data.renamed)} columns to ONNX-safe names")
    with stages.stage("prepare") as d:
        splits = split(data.frame, data.target, data.task, req.seed)
        d.append(
            f"train {len(splits.x_train)} / validation {len(splits.x_val)} / "
            f"test {len(splits.x_test)}{' stratified' if splits.stratified else ''}"
        )
    with stages.stage("train") as d:
        fitted = fit(data, splits, req.estimator, req.seed)
        tried = len(fitted.validation)
        d.append(f"{req.estimator} {fitted.params} (best of {tried} on validation)")
    with stages.stage("evaluate") as d:
        ev = _score(fitted.pipeline, splits.x_test, splits.y_test, data.task)
        metric = evaluate.PRIMARY[data.task]
        d.append(f"test {metric} {ev.metrics[metric]:.4f}")
    with stages.stage("export") as d:
        onnx_bytes = to_onnx(fitted.pipeline, data.features, data.task)
        runner = OnnxModel.load(onnx_bytes, data.features, data.task)
        parity = check_parity(runner, fitted.pipeline, splits.x_test)
        d.append(
            f"{len(onnx_bytes) / 1024:.0f} KiB, parity on {parity.rows} rows: max diff "
            f"{parity.max_abs_diff:.2g}"
        )
    with stages.stage("publish") as d:
        x_fit = pd.concat([splits.x_train, splits.x_val])
        y_fit = pd.concat([splits.y_train, splits.y_val])
        reference = build_reference(fitted.pipeline, x_fit, y_fit, data.features, data.task)
        estimation = build_estimation(fitted.pipeline, fitted.held_out, splits, x_fit, reference)
        classes = fitted.pipeline.classes_.tolist() if data.task == "classification" else []
        meta = ModelMetadata(
            name=req.model,
            version=0,
            task=data.task,
            features=data.features,
            outputs=[o.name for o in runner.session.get_outputs()],
            classes=classes,
            estimator=req.estimator,
            params=fitted.params,
            seed=req.seed,
            data=DataInfo(
                source=raw.source,
                sha256=raw.sha256,
                target=raw.target,
                builtin=None if req.data is not None else req.dataset,
                builtin_rows=req.rows if req.data is None and req.dataset == "synthetic" else None,
                path=str(req.data.resolve()) if req.data is not None else None,
                rows_raw=data.rows_raw,
                rows_clean=len(data.frame),
                rows_train=len(splits.x_train),
                rows_validation=len(splits.x_val),
                rows_test=len(splits.x_test),
                dropped=data.dropped,
            ),
            metrics=ev.metrics,
            confusion_matrix=ev.confusion_matrix,
            per_class=ev.per_class,
            primary_metric=evaluate.PRIMARY[data.task],
            parity=parity,
            libraries=libraries(),
            parent_version=parent_version
            if parent_version is not None
            else registry.active(req.model),
            trigger=req.trigger,
            created_at=time.time(),
            onnx_sha256="",
            estimation=estimation,
        )
        promote, why, champion = decide_promotion(
            registry, req.model, req.promote, data, splits, ev
        )
        published = registry.publish(req.model, onnx_bytes, meta, reference)
        if promote:
            registry.promote(req.model, published.version, req.actor, why)
        d.append(
            f"{req.model} v{published.version} {'promoted' if promote else 'not promoted'}: {why}"
        )
        fig = estimation.calibration_figures
        if fig is not None:
            d.append(
                f"calibration ECE {fig.ece_before:.3f} -> {fig.ece_after:.3f} "
                f"({'applied' if fig.applied else 'not needed'})"
            )
    return TrainResult(published, promote, why, ev, champion, stages.timings, fitted.pipeline)
