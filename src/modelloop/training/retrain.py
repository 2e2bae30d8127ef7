"""A retrain: base data plus labelled traffic, a challenger trained on it, and the gate that
decides whether it replaces the champion.

Default data policy: the newest labelled traffic (`recent_rows`, labelled after the retrain was
asked for when the trainer can wait for it) at full weight, and the version's base data and older
traffic weighted so that all of them together count `base_share` as much as the fresh traffic.
When the champion does worse on the fresh traffic than on its test split (by `stale_margin`), the
labelling concept has changed and old data would teach the old rule: it then counts
`stale_base_share` (default 0: measured here, even a 4:1 mix of new and old concept at these
weights recovers only ~60 % of the lost accuracy, fresh traffic alone ~95 %). The newest share
of the recent traffic is held out: both models are judged on it and on the original test
split. The challenger is promoted only if it wins on recent data and does not regress on the test
split by more than a margin, unless the champion itself has fallen on recent data (then the old
test split no longer describes the world).
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelloop.store.database import Database
from modelloop.store.log import PredictionLog
from modelloop.store.metadata import DataInfo, ModelMetadata, Trigger
from modelloop.store.registry import Registry
from modelloop.training import evaluate
from modelloop.training.clean import CleanData, clean
from modelloop.training.data import RawData, load_builtin, load_csv
from modelloop.training.errors import DataError
from modelloop.training.estimation import build_estimation
from modelloop.training.export import OnnxModel, check_parity, to_onnx
from modelloop.training.pipeline import Progress, fit, libraries
from modelloop.training.prepare import Splits, split
from modelloop.training.reference import build_reference


@dataclass(frozen=True)
class RetrainConfig:
    base_share: float = 1.0
    stale_base_share: float = 0.0
    recent_rows: int = 2000
    min_traffic_rows: int = 300
    recent_share: float = 0.2
    max_traffic_rows: int = 50_000
    reference_rows: int = 20_000
    min_gain: float = 0.0
    max_test_regression: float = 0.05
    stale_margin: float = 0.05


@dataclass
class RetrainOutcome:
    metadata: ModelMetadata
    promoted: bool
    decision: str
    numbers: dict[str, Any]


def base_data(meta: ModelMetadata) -> RawData | None:
    """Gather the champion's base data again, or None if it is gone."""
    info = meta.data
    if info.path:
        return load_csv(Path(info.path), info.target) if Path(info.path).is_file() else None
    if info.builtin:
        return load_builtin(info.builtin, rows=info.builtin_rows or 20_000, seed=meta.seed)
    return None


def traffic_frame(
    meta: ModelMetadata, rows: list[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.Series]:
    """Labelled traffic as features (the graph's names and types) and targets, oldest first."""
    rows = sorted(rows, key=lambda r: r["ts"])
    cols: dict[str, list[Any]] = {}
    for f in meta.features:
        values = [r["features"].get(f.name) for r in rows]
        if f.kind == "numeric":
            arr = np.array(
                [np.nan if not isinstance(v, int | float) else v for v in values], dtype=np.float64
            )
            cols[f.name] = arr.astype(np.float32).astype(np.float64).tolist()
        else:
            cols[f.name] = ["" if v is None else str(v) for v in values]
    x = pd.DataFrame(cols, columns=meta.feature_names)
    labels = [r["label"] for r in rows]
    if meta.task == "classification":
        as_int = all(isinstance(c, int) for c in meta.classes)
        y = pd.Series(
            [
                int(v) if as_int and isinstance(v, int | float) else (v if as_int else str(v))
                for v in labels
            ]
        )
    else:
        y = pd.Series([float(v) for v in labels], dtype=np.float64)
    return x, y


def _score(meta: ModelMetadata, pred: Any, proba: Any, y: pd.Series) -> float | None:
    if len(y) == 0:
        return None
    metric = meta.primary_metric
    if meta.task == "classification":
        classes = list(meta.classes)
        keep = np.isin(np.asarray(y).astype(str), [str(c) for c in classes])
        if not keep.any():
            return None
        ev = evaluate.classification(
            [v for v, k in zip(y.tolist(), keep, strict=True) if k],
            [v for v, k in zip(list(pred), keep, strict=True) if k],
            np.asarray(proba)[keep],
            classes,
        )
    else:
        ev = evaluate.regression(y, pred)
    return ev.metrics.get(metric)


def _better(metric: str, a: float, b: float) -> float:
    """How much better a is than b on metric (positive = better)."""
    return (b - a) if metric in evaluate.LOWER_IS_BETTER else (a - b)


def retrain(
    registry: Registry,
    db: Database,
    model: str,
    trigger: Trigger,
    actor: str,
    config: RetrainConfig,
    progress: Progress | None = None,
) -> RetrainOutcome:
    say = progress or (lambda _line: None)
    champion_version = registry.require_active(model)
    champ = registry.metadata(model, champion_version)
    metric = champ.primary_metric
    started = time.perf_counter()

    raw = base_data(champ)
    forced_cat = [f.name for f in champ.features if f.kind == "categorical"]
    forced_num = [f.name for f in champ.features if f.kind == "numeric"]
    labelled = PredictionLog(db).labelled(model, limit=config.max_traffic_rows)
    tx, ty = traffic_frame(champ, labelled)
    say(
        f"retrain {model}: champion v{champion_version}, {len(tx)} labelled predictions, base "
        f"data {'gone' if raw is None else raw.source}"
    )
    fresh = min(len(tx), config.recent_rows)  # the newest rows, at full weight
    n_recent = int(fresh * config.recent_share) if fresh >= config.min_traffic_rows else 0
    t_train_x, t_train_y = tx.iloc[: len(tx) - n_recent], ty.iloc[: len(ty) - n_recent]
    recent_x, recent_y = tx.iloc[len(tx) - n_recent :], ty.iloc[len(ty) - n_recent :]
    old = len(tx) - fresh

    base: CleanData | None = None
    if raw is not None:
        renamed_cat = forced_cat  # names in metadata are the cleaned (ONNX-safe) ones
        base = clean(
            raw.frame,
            raw.target,
            champ.task,
            [c for c in raw.frame.columns if _safe(c) in renamed_cat],
            [c for c in raw.frame.columns if _safe(c) in forced_num],
        )
    if base is None and len(t_train_x) < config.min_traffic_rows:
        raise DataError(
            f"model {model!r}: its base data is gone and only {len(t_train_x)} "
            "labelled predictions are there to train on"
        )
    if base is not None:
        bs = split(base.frame, base.target, champ.task, champ.seed)
    else:
        empty_x, empty_y = tx.iloc[:0], ty.iloc[:0]
        bs = Splits(empty_x, empty_y, empty_x, empty_y, empty_x, empty_y, False)
    base_rows = len(bs.x_train) + len(bs.x_val)
    champion = OnnxModel.load(
        registry.onnx_bytes(model, champion_version), champ.features, champ.task
    )
    # Has the concept changed? The champion on all fresh traffic against its own test metric.
    fresh_x, fresh_y = tx.iloc[len(tx) - fresh :], ty.iloc[len(ty) - fresh :]
    old_fresh = _score(champ, *champion.predict(fresh_x), fresh_y) if fresh else None
    champ_test_metric = champ.metrics.get(metric)
    stale = (
        old_fresh is not None
        and champ_test_metric is not None
        and _better(metric, champ_test_metric, old_fresh) > config.stale_margin
    )
    share = config.stale_base_share if stale else config.base_share
    # Base rows and older traffic together weigh `share` of the fresh rows' total.
    fresh_train = len(t_train_x) - old
    stale_rows = base_rows + old
    low = (share * fresh_train / stale_rows) if stale_rows and fresh_train else 1.0
    low = min(low, 1.0)
    t_weights = np.concatenate([np.full(old, low), np.ones(fresh_train)])
    # validation: every fifth traffic row, so it spans old and fresh traffic alike
    is_val = np.arange(len(t_train_x)) % 5 == 4
    x_train = pd.concat([bs.x_train, t_train_x[~is_val]], ignore_index=True)
    y_train = pd.concat([bs.y_train, t_train_y[~is_val]], ignore_index=True)
    x_val = pd.concat([bs.x_val, t_train_x[is_val]], ignore_index=True)
    y_val = pd.concat([bs.y_val, t_train_y[is_val]], ignore_index=True)
    weights = np.concatenate(
        [
            np.full(len(bs.x_train), low),
            t_weights[~is_val],
            np.full(len(bs.x_val), low),
            t_weights[is_val],
        ]
    )
    splits = Splits(x_train, y_train, x_val, y_val, bs.x_test, bs.y_test, bs.stratified)
    data = CleanData(
        frame=pd.concat([x_train, x_val]),
        target=pd.concat([y_train, y_val]),
        features=list(champ.features),
        task=champ.task,
        rows_raw=len(x_train),
    )
    if champ.task == "classification":
        seen = set(pd.concat([y_train, y_val]).astype(str))
        if len(seen) < 2:
            raise DataError(f"model {model!r}: the training data has a single class")
    fitted = fit(data, splits, champ.estimator, champ.seed, weights=weights)
    say(
        f"retrain {model}: trained {champ.estimator} on {len(x_train) + len(x_val)} rows "
        f"({len(t_train_x)} from traffic, {fresh_train} of them at full weight, "
        f"the other {stale_rows} at {low:.3g}{'; the concept changed' if stale else ''}) in "
        f"{time.perf_counter() - started:.1f} s"
    )

    def both(x: pd.DataFrame, y: pd.Series) -> tuple[float | None, float | None]:
        if len(x) == 0:
            return None, None
        c_pred, c_proba = champion.predict(x)
        n_pred = fitted.pipeline.predict(x)
        n_proba = fitted.pipeline.predict_proba(x) if champ.task == "classification" else None
        return _score(champ, n_pred, n_proba, y), _score(champ, c_pred, c_proba, y)

    new_recent, old_recent = both(recent_x, recent_y)
    new_test, old_test = both(bs.x_test, bs.y_test)
    if new_recent is not None and old_recent is not None:
        gain = _better(metric, new_recent, old_recent)
        regression = (
            _better(metric, old_test, new_test)
            if new_test is not None and old_test is not None
            else 0.0
        )
        promote = gain > config.min_gain and (regression <= config.max_test_regression or stale)
        waived = ", waived: the champion fell on recent data" if stale else ""
        why = (
            f"{metric} on {len(recent_x)} recent labelled predictions: challenger "
            f"{new_recent:.4f} vs champion {old_recent:.4f} (gain {gain:+.4f}); test split: "
            f"{_fmt(new_test)} vs {_fmt(old_test)} (regression {regression:+.4f}, allowed "
            f"{config.max_test_regression}{waived})"
        )
    elif new_test is not None and old_test is not None:
        gain = _better(metric, new_test, old_test)
        promote = gain > config.min_gain
        why = (
            f"too little labelled traffic to judge recent data; test split {metric}: "
            f"challenger {new_test:.4f} vs champion {old_test:.4f}"
        )
    else:
        promote, why = False, "nothing to judge the challenger on"
    why = ("promoted: " if promote else "not promoted: ") + why

    onnx_bytes = to_onnx(fitted.pipeline, champ.features, champ.task)
    runner = OnnxModel.load(onnx_bytes, champ.features, champ.task)
    parity_x = pd.concat([bs.x_test, recent_x], ignore_index=True)
    parity = check_parity(runner, fitted.pipeline, parity_x if len(parity_x) else x_val)
    ref_rows = PredictionLog(db).latest_features(model, config.reference_rows)
    if len(ref_rows) >= config.min_traffic_rows:
        ref_x, _ = traffic_frame(
            champ,
            [
                {
                    "ts": ts,
                    "features": features,
                    "label": champ.classes[0] if champ.classes else 0.0,
                }
                for ts, features in ref_rows
            ],
        )
        ref_source = f"the latest {len(ref_x)} logged predictions"
    else:
        ref_x = pd.concat([x_train, x_val], ignore_index=True)
        ref_source = "the training data"
    y_ref = pd.concat([y_train, y_val], ignore_index=True)
    reference = build_reference(fitted.pipeline, ref_x, y_ref, champ.features, champ.task)
    # the served model is fitted with sample weights: the out-of-fold models would not be it
    estimation = build_estimation(
        fitted.pipeline, fitted.held_out, splits, ref_x, reference, out_of_fold=False
    )
    ev_test = _full_eval(champ, fitted.pipeline, bs.x_test, bs.y_test)
    meta = ModelMetadata(
        name=model,
        version=0,
        task=champ.task,
        features=champ.features,
        outputs=[o.name for o in runner.session.get_outputs()],
        classes=fitted.pipeline.classes_.tolist() if champ.task == "classification" else [],
        estimator=champ.estimator,
        params=fitted.params,
        seed=champ.seed,
        data=DataInfo(
            source=f"{champ.data.source} + {len(t_train_x)} labelled predictions",
            sha256=champ.data.sha256,
            target=champ.data.target,
            builtin=champ.data.builtin,
            builtin_rows=champ.data.builtin_rows,
            path=champ.data.path,
            rows_raw=len(data.frame),
            rows_clean=len(data.frame),
            rows_train=len(x_train),
            rows_validation=len(x_val),
            rows_test=len(bs.x_test),
            rows_feedback=len(tx),
        ),
        metrics=ev_test.metrics if ev_test else {metric: new_recent},
        confusion_matrix=ev_test.confusion_matrix if ev_test else [],
        per_class=ev_test.per_class if ev_test else {},
        primary_metric=metric,
        parity=parity,
        libraries=libraries(),
        parent_version=champion_version,
        trigger=trigger,
        created_at=time.time(),
        onnx_sha256="",
        estimation=estimation,
    )
    if ev_test is not None and new_recent is not None and stale:
        # The old test split no longer describes traffic: the version's baseline for live
        # monitoring is its score on recent labelled data.
        meta = meta.model_copy(update={"metrics": {**ev_test.metrics, metric: new_recent}})
    published = registry.publish(model, onnx_bytes, meta, reference)
    if promote:
        registry.promote(model, published.version, actor, why)
    numbers = {
        "champion": {"version": champion_version, "recent": old_recent, "test": old_test},
        "challenger": {"version": published.version, "recent": new_recent, "test": new_test},
        "metric": metric,
        "recent_rows": len(recent_x),
        "traffic_rows": len(tx),
        "champion_stale": stale,
        "champion_fresh": old_fresh,
        "old_data_weight": low,
        "reference": ref_source,
        "seconds": round(time.perf_counter() - started, 2),
    }
    say(f"retrain {model}: v{published.version} {why}")
    return RetrainOutcome(published, promote, why, numbers)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _full_eval(
    meta: ModelMetadata, pipeline: Any, x: pd.DataFrame, y: pd.Series
) -> evaluate.Evaluation | None:
    if len(x) == 0:
        return None
    if meta.task == "classification":
        return evaluate.classification(
            y.tolist(),
            pipeline.predict(x).tolist(),
            pipeline.predict_proba(x),
            pipeline.classes_.tolist(),
        )
    return evaluate.regression(y, pipeline.predict(x))


def _safe(column: str) -> str:
    from modelloop.training.clean import onnx_name

    return onnx_name(str(column))
