"""Label-free estimates against the realized metrics on held-out labelled traffic: CBPE on the
synthetic churn data and on a three-class data set (steady and under covariate shifts), DLE on
a regression; the calibration that CBPE relies on; windows that merge."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelloop.monitoring.estimate.aggregate import calibrate as calibrate_logged
from modelloop.monitoring.window import Window
from modelloop.store.registry import FolderRegistry, Registry
from modelloop.training import synthetic
from modelloop.training.calibration import (
    apply_map,
    brier,
    calibrate,
    expected_calibration_error,
    fit_map,
)

from .estimate_world import Served, heteroscedastic, resample, three_classes, train_csv

TOLERANCE = 0.02  # the bench's goal: within 0.02 of the realized metric at 5,000 rows


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return FolderRegistry(tmp_path_factory.mktemp("estimate-registry"))


@pytest.fixture(scope="module")
def churn(registry: Registry) -> Served:
    from modelloop.training.pipeline import TrainRequest, run_training

    run_training(TrainRequest(model="churn", rows=20_000), registry)  # hist gradient boosting
    return Served.load(registry, "churn")


@pytest.fixture(scope="module")
def classes3(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("csv")
    return train_csv(
        registry, "three", three_classes(20_000, 1), "kind", folder, "logreg", "classification"
    )


@pytest.fixture(scope="module")
def regression(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("csv")
    return train_csv(
        registry,
        "hetero",
        heteroscedastic(20_000, 1),
        "y",
        folder,
        "hist_gradient_boosting",
        "regression",
    )


def _realized(served: Served, frame: pd.DataFrame, target: str) -> dict[str, float]:
    _, pred, proba = served.outputs(frame)
    y = frame[target].astype(str).to_numpy()
    pred = pred.astype(str)
    classes = [str(c) for c in served.meta.classes]
    auc = (
        skm.roc_auc_score(y == classes[1], proba[:, 1])
        if len(classes) == 2
        else skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
    )
    return {
        "accuracy": float(np.mean(pred == y)),
        "f1_macro": float(skm.f1_score(y, pred, average="macro", labels=classes)),
        "precision_macro": float(
            skm.precision_score(y, pred, average="macro", labels=classes, zero_division=0)
        ),
        "recall_macro": float(skm.recall_score(y, pred, average="macro", labels=classes)),
        "roc_auc": float(auc),
    }


def _estimated(served: Served, frame: pd.DataFrame) -> dict[str, list[float]]:
    window, _, _ = served.window(frame)
    est = served.estimator.estimate(window)
    assert est is not None
    metrics: dict[str, list[float]] = est["metrics"]
    return metrics


def _assert_close(served: Served, frame: pd.DataFrame, target: str) -> None:
    real = _realized(served, frame, target)
    est = _estimated(served, frame)
    for metric, value in real.items():
        got, stderr = est[metric]
        assert abs(got - value) < TOLERANCE, (metric, got, value)
        assert 0 < stderr < 0.05, (metric, stderr)


def test_calibration_lowers_the_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(3)
    logit = rng.normal(0, 1.5, 20_000)
    y = (rng.random(logit.size) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    p1 = 1 / (1 + np.exp(-3 * logit))  # three times too sure of itself
    proba = np.stack([1 - p1, p1], axis=1)
    fit, test = slice(0, 10_000), slice(10_000, None)
    cal = fit_map(proba[fit], y[fit])
    after = apply_map(cal, proba[test])
    before_ece = expected_calibration_error(proba[test], y[test])
    after_ece = expected_calibration_error(after, y[test])
    assert before_ece > 0.08
    assert after_ece < before_ece / 4
    assert brier(after, y[test]) < brier(proba[test], y[test])
    kept, figures = calibrate(proba, y, "all of it")
    assert kept is not None
    assert figures.applied
    assert figures.ece_before > 0.08
    assert figures.ece_after < figures.ece_before / 4  # cross-fitted: no row judges its own map
    assert figures.brier_after < figures.brier_before


def test_training_records_the_calibration_figures(churn: Served, classes3: Served) -> None:
    for served in (churn, classes3):
        est = served.meta.estimation
        assert est is not None
        assert est.calibration_figures is not None
        fig = est.calibration_figures
        data = served.meta.data  # out of fold on every split
        assert fig.rows == data.rows_train + data.rows_validation + data.rows_test
        assert fig.applied == (est.calibration is not None)
        assert fig.applied == (fig.ece_after < fig.ece_before)
        assert 0 <= fig.brier_after < 1
        assert 0 <= fig.ece_before < 0.2
        assert len(est.auc_edges) == (1 if len(served.meta.classes) == 2 else 3)


@pytest.mark.parametrize(
    "shift",
    [
        synthetic.Shift(),
        synthetic.Shift(numeric={"tenure_months": 0.5}),  # `modelloop simulate --shift covariate`
        synthetic.Shift(numeric={"support_tickets": 1.0}, categorical={"plan": ("pro", 0.2)}),
    ],
    ids=["steady", "tenure", "tickets-plan"],
)
def test_cbpe_is_within_tolerance_of_the_realized_metrics(
    churn: Served, shift: synthetic.Shift
) -> None:
    _assert_close(churn, synthetic.generate(5000, 41, shift), synthetic.TARGET)


def test_cbpe_follows_a_covariate_shift_that_hurts(churn: Served) -> None:
    """Rows resampled towards the model's decision boundary: P(y | x) is unchanged, the
    accuracy falls by ~0.2, and the estimate falls with it."""
    pool = synthetic.generate(60_000, 42)
    _, _, proba = churn.outputs(pool)
    hard = resample(pool, np.exp(-12 * np.abs(proba[:, 1] - 0.5)), 5000, 43)
    real = _realized(churn, hard, synthetic.TARGET)
    assert real["accuracy"] < 0.7
    _assert_close(churn, hard, synthetic.TARGET)


@pytest.mark.parametrize("tilt", [0.0, 0.8], ids=["steady", "shifted"])
def test_cbpe_on_three_classes(classes3: Served, tilt: float) -> None:
    pool = three_classes(60_000, 7)
    weights = np.exp(tilt * pool["x0"].to_numpy() - tilt * pool["x2"].to_numpy())
    _assert_close(classes3, resample(pool, weights, 5000, 8), "kind")


@pytest.mark.parametrize("tilt", [0.0, 0.5], ids=["steady", "shifted"])
def test_dle_is_within_tolerance_of_the_realized_errors(regression: Served, tilt: float) -> None:
    """Shifted: rows with large |x0| (where the noise is larger) drawn more often."""
    pool = heteroscedastic(60_000, 9)
    frame = resample(pool, np.exp(tilt * np.abs(pool["x0"].to_numpy())), 5000, 10)
    _, pred, _ = regression.outputs(frame)
    err = frame["y"].to_numpy() - pred
    real = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}
    window, _, _ = regression.window(frame)
    est = regression.estimator.estimate(window)
    assert est is not None
    assert est["method"] == "dle"
    for metric, value in real.items():
        got, stderr = est["metrics"][metric]
        assert abs(got - value) / value < 0.05, (metric, got, value)
        assert 0 < stderr < 0.05 * value
    if tilt:
        unshifted = regression.estimator.estimate(regression.window(pool.iloc[:5000])[0])
        assert unshifted is not None
        assert est["metrics"]["mae"][0] > 1.05 * unshifted["metrics"]["mae"][0]


def test_the_estimate_of_merged_windows_is_the_estimate_of_their_rows(churn: Served) -> None:
    frame = synthetic.generate(4000, 44)
    a, _, _ = churn.window(frame.iloc[:1500])
    b, _, _ = churn.window(frame.iloc[1500:])
    whole, _, _ = churn.window(frame)
    merged = Window.from_dict(a.to_dict()).merge(b)
    got, want = churn.estimator.estimate(merged), churn.estimator.estimate(whole)
    assert got is not None
    assert want is not None
    for metric, (value, stderr) in want["metrics"].items():
        assert got["metrics"][metric][0] == pytest.approx(value, abs=1e-9)
        assert got["metrics"][metric][1] == pytest.approx(stderr, rel=0.2, abs=1e-4)


def test_stderr_of_accuracy_matches_its_spread_over_windows(churn: Served) -> None:
    """The standard error is the spread of the realized accuracy around the estimate."""
    residuals, stderrs = [], []
    for seed in range(30):
        frame = synthetic.generate(1000, 500 + seed)
        real = _realized(churn, frame, synthetic.TARGET)["accuracy"]
        value, stderr = _estimated(churn, frame)["accuracy"]
        residuals.append(real - value)
        stderrs.append(stderr)
    spread = float(np.std(residuals))
    assert 0.6 < spread / float(np.mean(stderrs)) < 1.6, (spread, np.mean(stderrs))


def test_a_version_without_estimation_estimates_nothing(tmp_path: Path, churn: Served) -> None:
    from modelloop.monitoring.estimate.estimator import Estimator

    meta = churn.meta.model_copy(update={"estimation": None})
    assert Estimator(meta).estimate(churn.window(synthetic.generate(100, 1))[0]) is None


def test_a_concept_change_is_invisible_to_the_estimate(churn: Served) -> None:
    """The documented blind spot: the labelling rule changes, the inputs do not; the estimate
    holds while the realized accuracy collapses (only feedback can tell)."""
    frame = synthetic.generate(5000, 45, synthetic.Shift(concept=1))
    real = _realized(churn, frame, synthetic.TARGET)["accuracy"]
    value, _ = _estimated(churn, frame)["accuracy"]
    assert real < 0.4
    assert value > 0.8


def _nannyml_roc_auc(calibrated: np.ndarray, score: np.ndarray) -> float:
    """NannyML 0.13's `estimate_roc_auc`, row by row: sorted by the model's score, expected TPR
    and FPR from the cumulative calibrated probabilities."""
    order = np.argsort(score)[::-1]
    tps = np.r_[0, np.cumsum(calibrated[order])]
    fps = np.r_[0, 1 + np.arange(len(order)) - tps[1:]]
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1])) / 2)


def test_binned_roc_auc_follows_nannyml_row_by_row(churn: Served) -> None:
    """From the window's 200 bins, the estimated AUC is NannyML's per-row estimate."""
    for seed, shift in ((46, synthetic.Shift()), (47, synthetic.Shift(numeric={"age": 1.0}))):
        frame = synthetic.generate(5000, seed, shift)
        _, _, proba = churn.outputs(frame)
        est = churn.meta.estimation
        assert est is not None
        calibrated = calibrate_logged(est.calibration, np.asarray(proba, dtype=np.float64))[:, 1]
        want = _nannyml_roc_auc(calibrated, proba[:, 1])
        got, _ = _estimated(churn, frame)["roc_auc"]
        assert abs(got - want) < 0.002, (got, want)


def _tail_world(rows: int, seed: int, tilt: float) -> tuple[pd.DataFrame, np.ndarray]:
    """x0 ~ N(0, 1) resampled with weight exp(tilt |x0|), residual sd 0.5 + |x0|: the expected
    |residual| of a row is sqrt(2 / pi) (0.5 + |x0|), known without sampling noise."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(0, 1, 4 * rows)
    keep = rng.choice(x0.size, rows, p=np.exp(tilt * np.abs(x0)) / np.exp(tilt * np.abs(x0)).sum())
    frame = pd.DataFrame({"x0": x0[keep], "x1": rng.normal(0, 1, rows)})
    return frame, np.sqrt(2 / np.pi) * (0.5 + np.abs(frame["x0"].to_numpy()))


@pytest.mark.parametrize("tilt", [0.5, 1.0])
def test_dle_follows_a_shift_into_the_tails_beyond_the_reference_bins(tilt: float) -> None:
    """The cause of the DLE's miss under exp(0.5 |x0|): inside the outer bins (beyond the
    reference's 5th and 95th percentiles) the error keeps growing, and the bins' average error
    read the shifted rows as training's tail rows (-0.014 at tilt 0.5, -0.04 at 1.0 against the
    expected MAE). Fitted on 40,000 residuals (so that the fit's own noise is small), the
    error model with its within-bin slopes is within 0.01 of the expected MAE; its mean is
    checked against the window's aggregates in the next test."""
    from modelloop.store.metadata import ReferenceProfile
    from modelloop.store.profile import numeric_profile
    from modelloop.training.error_model import design, fit_error_model

    rng = np.random.default_rng(3)
    train, _ = _tail_world(40_000, 4, 0.0)
    resid = (0.5 + np.abs(train["x0"].to_numpy())) * rng.normal(0, 1, len(train))
    predicted = 3 * train["x0"].to_numpy()
    ref = ReferenceProfile(
        rows=len(train),
        numeric={f: numeric_profile(train[f].to_numpy()) for f in ("x0", "x1")},
        categorical={},
        score=numeric_profile(predicted),
    )
    model = fit_error_model(train, predicted, predicted + resid, ref, "test")
    frame, expected = _tail_world(40_000, 5, tilt)
    x, layout, within = design(frame, 3 * frame["x0"].to_numpy(), ref)
    coef = np.concatenate(
        [np.concatenate([model.abs_terms[f] for f, _ in layout])]
        + [np.asarray(model.abs_within[f]) for f, _ in within]
    )
    got = model.abs_intercept + float(np.mean(x @ coef))
    assert abs(got - float(np.mean(expected))) < 0.01, (got, float(np.mean(expected)))


def test_dle_from_the_aggregates_is_the_error_models_mean_over_the_rows(
    regression: Served,
) -> None:
    """The window's counts and per-bin sums give exactly the error model's mean prediction over
    its rows (slots and within-bin slopes), also after a merge and a round trip."""
    from modelloop.training.error_model import design

    est = regression.meta.estimation
    assert est is not None
    model = est.error_model
    assert model is not None
    assert model.abs_within, "the error model has within-bin slopes"
    pool = heteroscedastic(6000, 14)
    pool.loc[::50, "x1"] = np.nan  # missing values: a slot of their own, no slope
    _, pred, _ = regression.outputs(pool)
    x, layout, within = design(pool, np.asarray(pred, dtype=np.float64), regression.folder.ref)
    coef = np.concatenate(
        [np.concatenate([model.abs_terms[f] for f, _ in layout])]
        + [np.asarray(model.abs_within[f]) for f, _ in within]
    )
    want = model.abs_intercept + float(np.mean(x @ coef))
    a, _, _ = regression.window(pool.iloc[:2500])
    b, _, _ = regression.window(pool.iloc[2500:])
    merged = Window.from_dict(a.to_dict()).merge(Window.from_dict(b.to_dict()))
    assert set(merged.sums) == set(regression.folder.ref.numeric)
    for window in (regression.window(pool)[0], merged):
        got = regression.estimator.estimate(window)
        assert got is not None
        assert got["metrics"]["mae"][0] == pytest.approx(want, abs=1e-9)
