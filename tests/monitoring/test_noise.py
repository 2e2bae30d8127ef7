"""Thresholds above sampling noise: no flags on steady traffic, flags on real shifts at n=1,000."""

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from modelloop.monitoring.noise import (
    DEFAULT_FLOORS,
    Levels,
    NoiseCalibration,
    calibrate,
    categorical_noise,
    noise_levels,
    numeric_noise,
    scale_noise,
    thresholds_at,
    thresholds_from_noise,
)
from modelloop.monitoring.stats import FeatureDrift, Statistic, judge
from modelloop.store.profile import categorical_profile, numeric_profile

from .world import Column, World

N = 1_000


@pytest.fixture(scope="module")
def calibration(world: World) -> NoiseCalibration:
    return calibrate(world.numeric, world.categorical, sizes=(N, 10_000, 100_000))


@pytest.fixture(scope="module")
def thresholds(calibration: NoiseCalibration) -> Levels:
    return calibration.thresholds_at(N)


def judged(world: World, thresholds: Levels, raw: dict[str, Column]) -> list[FeatureDrift]:
    return [judge(d, thresholds[d.feature]) for d in world.drifts(raw)]


def test_steady_traffic_raises_no_flag_in_200_windows(world: World, thresholds: Levels) -> None:
    rng = np.random.default_rng(11)
    flags: Counter[tuple[str, str]] = Counter()
    worst: dict[str, float] = {}
    for _ in range(200):
        for d in judged(world, thresholds, World.draw(rng, N)):
            flags.update((d.feature, s) for s in d.flagged)
            for s in d.statistics:
                score = d.score(s)
                if score is not None:
                    key = f"{d.feature}.{s}"
                    worst[key] = max(worst.get(key, 0.0), score / thresholds[d.feature][s])
    assert not flags, flags
    assert len(worst) == 5 * 3 + 3 * 4
    # The worst steady window of each statistic stays clearly under its threshold.
    assert max(worst.values()) < 0.9, max(worst.items(), key=lambda kv: kv[1])


def test_quarter_std_mean_shift_and_ten_point_share_shift_are_flagged(
    world: World, thresholds: Levels
) -> None:
    rng = np.random.default_rng(12)
    windows = [
        judged(world, thresholds, World.draw(rng, N, mean_shift=0.25, share_shift=0.10))
        for _ in range(40)
    ]
    by_feature = [{d.feature: d for d in window} for window in windows]
    x = [w["x_norm"] for w in by_feature]
    c = [w["c_five"] for w in by_feature]
    assert all(d.decided_by == "wasserstein" for d in x if d.drifted)
    assert all(d.decided_by == "linf" for d in c if d.drifted)
    assert sum(d.drifted for d in x) == 40
    # L-infinity reads 0.10 +- 0.015 against a threshold of ~0.07: ~4 % of single windows miss
    # (the price of ~0 false flags, see noise.DEFAULT_MULTIPLIER).
    assert sum(d.drifted for d in c) >= 36
    # Within 2 windows of 1,000 rows: never two misses in a row.
    assert all(a.drifted or b.drifted for a, b in itertools.pairwise(c))
    # Only the shifted features are flagged.
    others = {d.feature for w in windows for d in w if d.drifted}
    assert others == {"x_norm", "c_five"}


def test_noise_level_is_the_quantile_steady_windows_exceed(
    world: World, calibration: NoiseCalibration
) -> None:
    """The multinomial model of a window matches windows folded from raw traffic: ~1 % of
    steady windows exceed the calibrated 99th percentile."""
    noise = calibration.noise_at(N)
    rng = np.random.default_rng(13)
    over = total = 0
    for _ in range(150):
        for d in world.drifts(World.draw(rng, N)):
            score = d.score(d.primary)
            assert score is not None
            over += score > noise[d.feature][d.primary]
            total += 1
    assert 0.002 < over / total < 0.03, (over, total)


def test_noise_shrinks_like_the_sampling_law(world: World) -> None:
    at_1k = noise_levels(world.numeric, world.categorical, 1_000)
    at_10k = noise_levels(world.numeric, world.categorical, 10_000)
    for feature, stats in at_1k.items():
        rows = _rows(world, feature)
        for stat, level in stats.items():
            if level == 0:  # no missing / unseen values in the reference: no noise at any n
                assert at_10k[feature][stat] == 0
                continue
            predicted = scale_noise(level, 1_000, 10_000, stat, rows)
            tolerance = 0.25 if stat == "psi" else 0.12
            assert predicted == pytest.approx(at_10k[feature][stat], rel=tolerance), (feature, stat)
    # Roughly 1/sqrt(n) for W1 and L-infinity, 1/n for PSI.
    assert at_1k["x_norm"]["wasserstein"] / at_10k["x_norm"]["wasserstein"] == pytest.approx(
        3.0, rel=0.15
    )
    assert at_1k["x_norm"]["psi"] / at_10k["x_norm"]["psi"] == pytest.approx(9.2, rel=0.2)


def _rows(world: World, feature: str) -> int:
    if feature in world.numeric:
        p = world.numeric[feature]
        return sum(p.counts) + p.missing
    q = world.categorical[feature]
    return sum(q.counts) + q.other + q.missing


def test_calibration_serves_any_window_size(world: World, calibration: NoiseCalibration) -> None:
    measured = noise_levels(world.numeric, world.categorical, 10_000)
    assert calibration.noise_at(10_000) == measured
    # Between and beyond measured sizes: close to a fresh measurement.
    for n in (600, 3_000, 30_000, 300_000):
        fresh = noise_levels(world.numeric, world.categorical, n, draws=4_000)
        served = calibration.noise_at(n)
        for feature in ("x_norm", "x_logn", "c_five", "c_zipf"):
            primary: Statistic = "wasserstein" if feature.startswith("x") else "linf"
            assert served[feature][primary] == pytest.approx(fresh[feature][primary], rel=0.12), (
                n,
                feature,
            )
    # Stored with the reference as JSON and read back unchanged.
    again = NoiseCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.noise_at(2_500) == calibration.noise_at(2_500)
    assert again.thresholds_at(N) == calibration.thresholds_at(N)


def test_thresholds_for_a_whole_profile_at_once(world: World, thresholds: Levels) -> None:
    direct = thresholds_at(world.numeric, world.categorical, N)
    assert set(direct) == set(world.numeric) | set(world.categorical)
    assert set(direct["x_norm"]) == {"wasserstein", "psi", "missing"}
    assert set(direct["c_five"]) == {"linf", "psi", "unseen", "missing"}
    # The interpolating calibration gives the same thresholds at a measured size.
    assert direct == thresholds
    # No noise where the reference never misses a value or sees an unseen one: the floor rules.
    assert direct["x_norm"]["missing"] == DEFAULT_FLOORS["missing"]
    assert direct["c_five"]["unseen"] == DEFAULT_FLOORS["unseen"]
    # At n=1,000 noise decides W1 and L-infinity; at 100k the floors do.
    assert direct["x_norm"]["wasserstein"] > DEFAULT_FLOORS["wasserstein"]
    assert direct["c_five"]["linf"] > DEFAULT_FLOORS["linf"]
    big = thresholds_at(world.numeric, world.categorical, 100_000)
    assert big["x_norm"]["wasserstein"] == DEFAULT_FLOORS["wasserstein"]
    assert big["c_five"]["linf"] == DEFAULT_FLOORS["linf"]
    custom = thresholds_from_noise({"f": {"psi": 0.04}}, floors={"psi": 0.05}, multiplier=2.0)
    assert custom == {"f": {"psi": pytest.approx(0.08)}}


def test_noise_is_seeded_and_independent_of_feature_order(world: World) -> None:
    a = noise_levels(world.numeric, world.categorical, 2_000, seed=3)
    b = noise_levels(dict(reversed(world.numeric.items())), world.categorical, 2_000, seed=3)
    c = noise_levels(world.numeric, world.categorical, 2_000, seed=4)
    assert a == b
    assert a != c
    assert c["x_norm"]["wasserstein"] == pytest.approx(a["x_norm"]["wasserstein"], rel=0.1)


def test_two_sample_noise_accounts_for_a_small_reference() -> None:
    """With a 2k-row reference, windows of 100k rows are as noisy as ~2k-row windows against
    an exact reference: the reference's own sampling error dominates."""
    rng = np.random.default_rng(14)
    small = numeric_profile(rng.normal(size=2_000))
    two = numeric_noise("x", small, 100_000)["wasserstein"]
    one = numeric_noise("x", small, 100_000, two_sample=False)["wasserstein"]
    like = numeric_noise("x", small, 1_961, two_sample=False)["wasserstein"]  # 1/(1/2k + 1/100k)
    assert one < two / 5
    assert two == pytest.approx(like, rel=0.12)


def test_constant_and_empty_references_have_no_noise() -> None:
    constant = numeric_noise("k", numeric_profile(np.full(500, 2.0)), N)
    assert constant == {"wasserstein": 0.0, "psi": 0.0, "missing": 0.0}
    nothing = numeric_noise("k", numeric_profile(np.full(500, np.nan)), N)
    assert nothing == {"wasserstein": 0.0, "psi": 0.0, "missing": 0.0}
    single = categorical_noise("c", categorical_profile(["a"] * 500), N)
    assert single == {"linf": 0.0, "psi": 0.0, "unseen": 0.0, "missing": 0.0}
    with pytest.raises(ValueError, match="positive"):
        scale_noise(0.1, 0, 10, "psi")
