"""The training pipeline end to end, in process: metrics, ONNX parity, determinism, metadata,
reference profile, the parity gate and the promotion policy."""

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from modelloop.store.metadata import ReferenceProfile
from modelloop.store.registry import FolderRegistry, Registry, sha256_bytes
from modelloop.training import export as export_module
from modelloop.training import pipeline as pipeline_module
from modelloop.training.clean import clean
from modelloop.training.data import load_builtin
from modelloop.training.errors import ConfigError, ParityError
from modelloop.training.export import OnnxModel, check_parity, to_onnx
from modelloop.training.pipeline import TrainRequest, TrainResult, run_training
from modelloop.training.prepare import preprocessor, split

TrainOnce = Callable[[str, str], tuple[TrainResult, Registry]]
SYNTHETIC_ROWS = 2000  # as in conftest


@pytest.mark.parametrize(
    ("dataset", "estimator", "metric", "low", "high"),
    [
        ("synthetic", "hist_gradient_boosting", "accuracy", 0.75, 0.95),
        ("synthetic", "logreg", "accuracy", 0.75, 0.95),
        ("breast_cancer", "logreg", "accuracy", 0.9, 1.0),
        ("iris", "logreg", "accuracy", 0.85, 1.0),
        ("wine", "logreg", "accuracy", 0.85, 1.0),
        ("diabetes", "linear", "r2", 0.2, 0.7),
    ],
)
def test_builtin_datasets_train_to_plausible_metrics(
    train_once: TrainOnce, dataset: str, estimator: str, metric: str, low: float, high: float
) -> None:
    result, _ = train_once(dataset, estimator)
    meta = result.metadata
    value = meta.metrics[metric]
    assert value is not None
    assert low < value <= high, f"{dataset}/{estimator}: {metric} {value}"
    assert meta.task == ("regression" if dataset == "diabetes" else "classification")
    if meta.task == "classification":
        for name in ("precision_macro", "recall_macro", "f1_macro", "roc_auc"):
            m = meta.metrics[name]
            assert m is not None
            assert 0.5 < m <= 1.0, (name, m)
        log_loss = meta.metrics["log_loss"]
        assert log_loss is not None
        assert 0 < log_loss < 1.0
        n = len(meta.classes)
        assert np.asarray(meta.confusion_matrix).shape == (n, n)
        assert sum(map(sum, meta.confusion_matrix)) == meta.data.rows_test
        assert set(meta.per_class) == {str(c) for c in meta.classes}
        assert meta.primary_metric == "accuracy"
    else:
        rmse, mae = meta.metrics["rmse"], meta.metrics["mae"]
        assert rmse is not None
        assert mae is not None
        assert 0 < mae <= rmse < 80  # diabetes targets span 25..346
        assert meta.primary_metric == "rmse"


def test_builtin_classes_and_features(train_once: TrainOnce) -> None:
    iris, _ = train_once("iris", "logreg")
    assert iris.metadata.classes == ["setosa", "versicolor", "virginica"]
    assert [f.kind for f in iris.metadata.features] == ["numeric"] * 4
    # "sepal length (cm)" is not a valid ONNX input name: it was made safe.
    assert iris.metadata.features[0].name == "sepal_length_cm"
    synthetic, _ = train_once("synthetic", "logreg")
    kinds = {f.name: f.kind for f in synthetic.metadata.features}
    assert kinds == {
        "age": "numeric",
        "income": "numeric",
        "tenure_months": "numeric",
        "sessions_per_week": "numeric",
        "support_tickets": "numeric",
        "region": "categorical",
        "plan": "categorical",
        "device": "categorical",
    }
    cats = {f.name: f.categories for f in synthetic.metadata.features}
    assert cats["plan"] == ["basic", "plus", "pro"]
    assert cats["device"] == ["android", "ios", "web"]  # missing ("") is not a category
    assert synthetic.metadata.classes == ["no", "yes"]


ESTIMATORS = [
    ("synthetic", "logreg"),
    ("synthetic", "random_forest"),
    ("synthetic", "hist_gradient_boosting"),
    ("diabetes", "linear"),
    ("diabetes", "random_forest"),
    ("diabetes", "hist_gradient_boosting"),
]


def _test_split(dataset: str) -> tuple[Any, Any, Any]:
    """The cleaned data and its test split, exactly as the pipeline made them (seed 0)."""
    raw = load_builtin(dataset, rows=SYNTHETIC_ROWS, seed=0)
    data = clean(raw.frame, raw.target)
    splits = split(data.frame, data.target, data.task, seed=0)
    return data, splits.x_test, splits.y_test


@pytest.mark.parametrize(("dataset", "estimator"), ESTIMATORS)
def test_every_estimator_exports_to_onnx_with_parity(
    train_once: TrainOnce, dataset: str, estimator: str
) -> None:
    result, registry = train_once(dataset, estimator)
    meta = result.metadata
    assert meta.estimator == estimator
    parity = meta.parity
    assert parity.rows == meta.data.rows_test > 0
    assert parity.label_mismatches == 0
    assert 0 <= parity.max_abs_diff < 1e-4 if meta.task == "classification" else True
    assert 0 <= parity.max_rel_diff < 1e-4

    # The published graph, read back through the hash check, takes raw values (strings for
    # categorical features) and reproduces the recorded test metrics.
    graph = registry.onnx_bytes(meta.name, meta.version)
    model = OnnxModel.load(graph, meta.features, meta.task)
    inputs = {i.name: i.type for i in model.session.get_inputs()}
    assert list(inputs) == meta.feature_names
    for f in meta.features:
        assert inputs[f.name] == ("tensor(float)" if f.kind == "numeric" else "tensor(string)")
    assert [o.name for o in model.session.get_outputs()] == meta.outputs
    assert "ZipMap" not in {n.op_type for n in _graph_nodes(graph)}

    data, x_test, y_test = _test_split(dataset)
    assert data.features == meta.features
    pred, proba = model.predict(x_test)
    if meta.task == "classification":
        assert proba is not None
        assert proba.shape == (len(x_test), len(meta.classes))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        accuracy = float(np.mean(pred.astype(str) == y_test.astype(str).to_numpy()))
        assert accuracy == pytest.approx(meta.metrics["accuracy"], abs=1e-12)
    else:
        rmse = float(np.sqrt(np.mean((pred - y_test.to_numpy(dtype=float)) ** 2)))
        assert rmse == pytest.approx(meta.metrics["rmse"], rel=1e-4)


def _graph_nodes(graph: bytes) -> list[Any]:
    import onnx

    return list(onnx.load_from_string(graph).graph.node)


def test_unknown_categories_and_missing_values_are_served(train_once: TrainOnce) -> None:
    """The preprocessing is in the graph: unseen categories and missing values are answered."""
    import pandas as pd

    result, registry = train_once("synthetic", "hist_gradient_boosting")
    meta = result.metadata
    model = OnnxModel.load(registry.onnx_bytes(meta.name, meta.version), meta.features, meta.task)
    frame = pd.DataFrame(
        {
            "age": [30.0, np.nan],
            "income": [np.nan, 50_000.0],
            "tenure_months": [1.0, 100.0],
            "sessions_per_week": [2.0, 9.0],
            "support_tickets": [5.0, 0.0],
            "region": ["atlantis", ""],
            "plan": ["basic", "enterprise"],
            "device": ["", "fridge"],
        }
    )
    pred, proba = model.predict(frame)
    assert proba is not None
    assert set(pred.tolist()) <= {"no", "yes"}
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_same_data_and_seed_give_the_same_model(train_once: TrainOnce, tmp_path: Path) -> None:
    first, first_registry = train_once("synthetic", "hist_gradient_boosting")
    registry = FolderRegistry(tmp_path / "again")
    req = TrainRequest(
        model="again",
        dataset="synthetic",
        estimator="hist_gradient_boosting",
        rows=SYNTHETIC_ROWS,
        seed=0,
    )
    again = run_training(req, registry)
    assert again.metadata.metrics == first.metadata.metrics
    assert again.metadata.params == first.metadata.params
    assert again.metadata.confusion_matrix == first.metadata.confusion_matrix
    assert again.metadata.onnx_sha256 == first.metadata.onnx_sha256
    assert again.metadata.data.sha256 == first.metadata.data.sha256
    first_file = first_registry.version_dir(first.metadata.name, 1) / "model.onnx"
    assert sha256_bytes((registry.root / "again" / "1" / "model.onnx").read_bytes()) == (
        sha256_bytes(first_file.read_bytes())
    )
    # A different seed is different data and a different model: the check above can fail.
    other = run_training(
        TrainRequest(
            model="other",
            dataset="synthetic",
            estimator="hist_gradient_boosting",
            rows=SYNTHETIC_ROWS,
            seed=1,
        ),
        registry,
    )
    assert other.metadata.onnx_sha256 != first.metadata.onnx_sha256
    assert other.metadata.data.sha256 != first.metadata.data.sha256


def test_metadata_has_every_field_the_design_lists(train_once: TrainOnce) -> None:
    result, registry = train_once("synthetic", "hist_gradient_boosting")
    meta = result.metadata
    raw = json.loads((registry.version_dir(meta.name, meta.version) / "metadata.json").read_text())

    assert raw["name"] == "synthetic-hist-gradient-boosting"
    assert raw["version"] == 1
    assert raw["task"] == "classification"
    # input schema: feature names in order, each numeric or categorical, categories seen
    assert [f["name"] for f in raw["features"]][:2] == ["age", "income"]
    for f in raw["features"]:
        assert f["kind"] in ("numeric", "categorical")
        assert (len(f["categories"]) > 0) == (f["kind"] == "categorical")
    # output names and class labels
    assert raw["outputs"] == ["label", "probabilities"]
    assert raw["classes"] == ["no", "yes"]
    # training data source and its hash, row counts
    data = raw["data"]
    assert data["source"] == f"synthetic(rows={SYNTHETIC_ROWS}, seed=0)"
    assert len(data["sha256"]) == 64
    assert int(data["sha256"], 16) >= 0
    assert data["target"] == "churned"
    assert data["rows_raw"] == SYNTHETIC_ROWS
    assert data["rows_clean"] == SYNTHETIC_ROWS - sum(data["dropped"].values())
    assert data["rows_train"] + data["rows_validation"] + data["rows_test"] == data["rows_clean"]
    assert data["rows_test"] == pytest.approx(0.2 * data["rows_clean"], abs=1)
    # evaluation metrics on the held-out test set
    assert set(raw["metrics"]) == {
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc",
        "log_loss",
    }
    assert raw["primary_metric"] == "accuracy"
    assert raw["confusion_matrix"]
    assert set(raw["per_class"]) == {"no", "yes"}
    # ONNX/sklearn parity figures
    assert set(raw["parity"]) == {"rows", "label_mismatches", "max_abs_diff", "max_rel_diff"}
    # library versions
    import onnxruntime
    import skl2onnx
    import sklearn

    assert raw["libraries"]["scikit-learn"] == sklearn.__version__
    assert raw["libraries"]["skl2onnx"] == skl2onnx.__version__
    assert raw["libraries"]["onnxruntime"] == onnxruntime.__version__
    assert {"modelloop", "python", "onnx", "numpy", "pandas"} <= set(raw["libraries"])
    # parent version, trigger, created time, the graph's hash, the estimator and its params
    assert raw["parent_version"] is None
    assert raw["trigger"] == "manual"
    assert raw["created_at"] > 1.6e9
    assert raw["onnx_sha256"] == sha256_bytes(registry.onnx_bytes(meta.name, meta.version))
    assert raw["estimator"] == "hist_gradient_boosting"
    assert set(raw["params"]) == {"learning_rate", "max_iter", "max_leaf_nodes"}
    assert raw["seed"] == 0
    assert raw["reference_file"] == "reference.json"


def _check_numeric(profile: Any, rows: int) -> None:
    assert len(profile.edges) >= 1
    assert profile.edges == sorted(set(profile.edges))
    assert len(profile.counts) == len(profile.edges) + 1
    assert len(profile.centroids) == len(profile.counts)
    assert sum(profile.counts) + profile.missing == rows
    assert all(c > 0 for c in profile.counts)  # quantile bins: none empty


@pytest.mark.parametrize(
    ("dataset", "estimator"), [("synthetic", "hist_gradient_boosting"), ("diabetes", "linear")]
)
def test_reference_profile_bins_every_feature(
    train_once: TrainOnce, dataset: str, estimator: str
) -> None:
    result, registry = train_once(dataset, estimator)
    meta = result.metadata
    ref_path = registry.version_dir(meta.name, meta.version) / "reference.json"
    ref = ReferenceProfile.model_validate_json(ref_path.read_bytes())
    rows = meta.data.rows_train + meta.data.rows_validation
    assert ref.rows == rows
    assert set(ref.numeric) | set(ref.categorical) == set(meta.feature_names)
    for f in meta.features:
        if f.kind == "numeric":
            _check_numeric(ref.numeric[f.name], rows)
        else:
            cat = ref.categorical[f.name]
            assert sorted(cat.categories) == f.categories
            assert sum(cat.counts) + cat.other + cat.missing == rows
            assert cat.counts == sorted(cat.counts, reverse=True)
    _check_numeric(ref.score, rows)
    if meta.task == "classification":
        assert ref.predicted is not None
        assert ref.labels is not None
        assert sum(ref.labels.counts) == rows
        assert sorted(ref.labels.categories) == sorted(map(str, meta.classes))
        assert sum(ref.predicted.counts) == rows
        assert 0.0 <= min(ref.score.edges) <= max(ref.score.edges) <= 1.0
    else:
        assert ref.label_values is not None
        _check_numeric(ref.label_values, rows)
    if dataset == "synthetic":
        # The generator leaves 5 % of incomes and 3 % of devices missing.
        assert ref.numeric["income"].missing == pytest.approx(0.05 * rows, rel=0.35)
        assert ref.categorical["device"].missing == pytest.approx(0.03 * rows, rel=0.4)
        assert ref.numeric["age"].missing == 0


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_failed_parity_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = FolderRegistry(tmp_path / "registry")
    monkeypatch.setattr(export_module, "PROBA_TOLERANCE", -1.0)
    with pytest.raises(ParityError, match=r"tolerance -1\.0.*worst rows: row \d+"):
        run_training(TrainRequest(model="iris", dataset="iris", estimator="logreg"), registry)
    assert registry.versions("iris") == []
    assert registry.active("iris") is None
    assert [f for f in _files_under(registry.root) if not f.startswith(".probe")] == []


def test_a_graph_that_differs_from_the_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export a perturbed copy of the fitted pipeline: parity names the rows, nothing is kept."""
    real_to_onnx = pipeline_module.to_onnx

    def perturbed_to_onnx(pipeline: Pipeline, features: Any, task: Any) -> bytes:
        other = copy.deepcopy(pipeline)
        est = other.steps[-1][1]
        est.coef_ = est.coef_ * 0.5 + 0.3
        return real_to_onnx(other, features, task)

    monkeypatch.setattr(pipeline_module, "to_onnx", perturbed_to_onnx)
    registry = FolderRegistry(tmp_path / "registry")
    with pytest.raises(ParityError) as info:
        run_training(TrainRequest(model="wine", dataset="wine", estimator="logreg"), registry)
    message = str(info.value)
    assert "\n" not in message
    assert "differs from scikit-learn" in message
    assert "worst rows: row " in message
    assert registry.versions("wine") == []
    assert [f for f in _files_under(registry.root) if not f.startswith(".probe")] == []


def test_check_parity_regression_tolerance() -> None:
    """A regression graph off by more than the relative tolerance is refused, by row."""
    raw = load_builtin("diabetes")
    data = clean(raw.frame, raw.target)
    s = split(data.frame, data.target, data.task, seed=0)
    from sklearn.linear_model import Ridge

    pipe = Pipeline([("prepare", preprocessor(data.features, True)), ("estimator", Ridge())])
    pipe.fit(s.x_train, s.y_train)
    good = OnnxModel.load(to_onnx(pipe, data.features, "regression"), data.features, "regression")
    parity = check_parity(good, pipe, s.x_test)
    assert parity.max_rel_diff < 1e-4
    assert parity.rows == len(s.x_test)
    shifted = copy.deepcopy(pipe)
    shifted.steps[-1][1].intercept_ += 1.0  # ~1 % of a typical target
    bad = OnnxModel.load(to_onnx(shifted, data.features, "regression"), data.features, "regression")
    with pytest.raises(ParityError, match="relative"):
        check_parity(bad, pipe, s.x_test)


def test_unknown_estimator_for_the_task(tmp_path: Path) -> None:
    registry = FolderRegistry(tmp_path / "registry")
    with pytest.raises(ConfigError, match="'linear' does not fit a classification task"):
        run_training(TrainRequest(model="m", dataset="iris", estimator="linear"), registry)
    with pytest.raises(ConfigError, match="'logreg' does not fit a regression task"):
        run_training(TrainRequest(model="m", dataset="diabetes", estimator="logreg"), registry)
    assert registry.versions("m") == []


def _weak_champion(registry: Registry, like: TrainResult) -> int:
    """Publish and promote an iris model trained on shuffled labels (near chance)."""
    raw = load_builtin("iris")
    data = clean(raw.frame, raw.target)
    s = split(data.frame, data.target, data.task, seed=0)
    y = s.y_train.sample(frac=1.0, random_state=3).to_numpy()
    pipe = Pipeline(
        [
            ("prepare", preprocessor(data.features, True)),
            ("estimator", LogisticRegression(max_iter=500)),
        ]
    )
    pipe.fit(s.x_train, y)
    graph = to_onnx(pipe, data.features, data.task)
    published = registry.publish(
        "iris", graph, like.metadata, registry.reference(like.metadata.name, like.metadata.version)
    )
    registry.promote("iris", published.version, "test", "weak champion")
    return published.version


def test_promote_policies(train_once: TrainOnce, tmp_path: Path) -> None:
    registry = FolderRegistry(tmp_path / "registry")

    def train(policy: str) -> TrainResult:
        req = TrainRequest(model="iris", dataset="iris", estimator="logreg", promote=policy)  # type: ignore[arg-type]
        return run_training(req, registry)

    first = train("auto")
    assert (first.metadata.version, first.promoted) == (1, True)
    assert first.decision == "no active version yet"
    assert registry.active("iris") == 1

    never = train("never")
    assert (never.metadata.version, never.promoted) == (2, False)
    assert registry.active("iris") == 1
    assert never.metadata.parent_version == 1

    same = train("auto")  # identical data and seed: equal, so not better
    assert (same.metadata.version, same.promoted) == (3, False)
    assert "does not beat v1" in same.decision
    assert same.champion is not None
    assert same.champion["version"] == 1
    assert registry.active("iris") == 1

    always = train("always")
    assert (always.metadata.version, always.promoted) == (4, True)
    assert registry.active("iris") == 4

    weak = _weak_champion(registry, always)
    assert registry.active("iris") == weak == 5
    better = train("auto")
    assert (better.metadata.version, better.promoted) == (6, True)
    assert f"beats v{weak}" in better.decision
    assert better.champion is not None
    champion_accuracy = better.champion["metrics"]["accuracy"]
    assert champion_accuracy < 0.7 < (better.metadata.metrics["accuracy"] or 0)
    assert registry.active("iris") == 6
    assert better.metadata.parent_version == weak

    history = [(h.action, h.from_version, h.to_version) for h in registry.history("iris")]
    assert history == [
        ("promote", None, 1),
        ("promote", 1, 4),
        ("promote", 4, 5),
        ("promote", 5, 6),
    ]
    assert registry.history("iris")[-1].reason == better.decision


def test_error_model_residuals_are_out_of_fold_on_every_split() -> None:
    """A 1-nearest-neighbour model predicts its own training rows exactly: the residuals the
    error model is fitted on are non-zero only if no row is predicted by a model that saw it;
    and every split's rows are there."""
    from sklearn.neighbors import KNeighborsRegressor

    from modelloop.training.estimation import cross_fitted_residuals

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.normal(size=1000)})
    y = pd.Series(x["a"] + rng.normal(size=1000))
    splits = split(x, y, "regression", 0)
    rows, predicted, true = cross_fitted_residuals(KNeighborsRegressor(1), splits)
    assert len(rows) == len(predicted) == len(true) == 1000
    assert sorted(rows.index) == sorted(x.index)
    assert np.all(np.abs(true - predicted) > 0)
    assert np.allclose(true, y.loc[rows.index].to_numpy())
