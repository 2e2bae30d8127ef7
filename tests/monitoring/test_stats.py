"""Drift statistics on counts, each checked against an independent computation on raw values."""

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import wasserstein_distance

from modelloop.monitoring.stats import (
    FeatureDrift,
    bin_positions,
    categorical_counts,
    categorical_drift,
    judge,
    linf,
    missing_rate,
    numeric_drift,
    psi,
    rate_delta,
    unseen_rate,
    wasserstein_binned,
)
from modelloop.store.metadata import NumericProfile
from modelloop.store.profile import (
    categorical_bins,
    categorical_profile,
    numeric_bins,
    numeric_profile,
)

from .world import FIVE, FIVE_P, World, shifted_shares

FloatArray = npt.NDArray[np.float64]


def raw_shares(values: FloatArray, edges: list[float]) -> FloatArray:
    """Bin shares by np.histogram, independently of store.profile (NaN dropped)."""
    x = values[~np.isnan(values)]
    hist, _ = np.histogram(x, bins=[-np.inf, *edges, np.inf])
    shares: FloatArray = hist / hist.sum()
    return shares


def hand_psi(p: FloatArray, q: FloatArray) -> float:
    return sum(float(qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))


@pytest.fixture(scope="module")
def normal_ref() -> tuple[FloatArray, NumericProfile]:
    x = np.random.default_rng(1).normal(0, 1, 100_000)
    return x, numeric_profile(x, n_bins=20)


# -- Wasserstein ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "low", "high"),
    [
        # Binned on centroids misses movement inside bins: reads a few % low (or ~1 % high).
        ("normal shift 0.25 std", lambda r: r.normal(0.25, 1, 10_000), 0.95, 1.01),
        ("normal shift 1 std", lambda r: r.normal(1.0, 1, 10_000), 0.93, 1.01),
        (
            "shift 0.4 and shrink to 0.9 std",
            lambda r: r.normal(0, 1, 10_000) * 0.9 + 0.4,
            0.93,
            1.01,
        ),
        ("uniform instead of normal", lambda r: r.uniform(-2, 2, 10_000), 0.90, 1.02),
        # Spread beyond the reference range lands in the open outer bins, at their reference
        # centroids: a known, documented under-read (~25 % here) that still reads 0.3 std.
        ("normal scale x1.5", lambda r: r.normal(0, 1.5, 10_000), 0.70, 0.80),
    ],
)
def test_wasserstein_binned_against_raw_scipy(
    normal_ref: tuple[FloatArray, NumericProfile], name: str, make: object, low: float, high: float
) -> None:
    ref_raw, ref = normal_ref
    assert callable(make)
    cur_raw: FloatArray = make(np.random.default_rng(2))
    counts, _ = numeric_bins(cur_raw, ref.edges)
    binned = wasserstein_binned(ref.counts, counts, ref.centroids, ref.std)
    raw = wasserstein_distance(ref_raw, cur_raw) / ref_raw.std()
    assert binned is not None
    assert low * raw <= binned <= high * raw, (name, binned / raw)


def test_wasserstein_binned_is_exactly_w1_of_the_centroid_distributions(
    normal_ref: tuple[FloatArray, NumericProfile],
) -> None:
    _, ref = normal_ref
    counts, _ = numeric_bins(np.random.default_rng(3).lognormal(0, 0.5, 5_000), ref.edges)
    expected = wasserstein_distance(
        ref.centroids, ref.centroids, u_weights=ref.counts, v_weights=counts
    )
    got = wasserstein_binned(ref.counts, counts, ref.centroids, ref.std)
    assert got == pytest.approx(expected / ref.std, rel=1e-9)


def test_design_facts_for_a_quarter_std_mean_shift_at_10k_rows(
    normal_ref: tuple[FloatArray, NumericProfile],
) -> None:
    _, ref = normal_ref
    rng = np.random.default_rng(4)
    shifted, _ = numeric_bins(rng.normal(0.25, 1, 10_000), ref.edges)
    steady, _ = numeric_bins(rng.normal(0, 1, 10_000), ref.edges)

    w_shift = wasserstein_binned(ref.counts, shifted, ref.centroids, ref.std)
    w_steady = wasserstein_binned(ref.counts, steady, ref.centroids, ref.std)
    p_shift, p_steady = psi(ref.counts, shifted), psi(ref.counts, steady)
    assert w_shift is not None
    assert w_steady is not None
    assert p_shift is not None
    assert p_steady is not None

    assert w_shift == pytest.approx(0.25, rel=0.10)
    assert w_steady < 0.03
    # PSI sees the same shift as only ~0.06: the usual 0.1 cut-off would miss it.
    assert 0.05 < p_shift < 0.08
    assert p_steady < 0.005


def test_wasserstein_of_identical_counts_is_zero_and_symmetric_in_size() -> None:
    counts = [10, 20, 30, 40]
    centroids = [0.0, 1.0, 2.0, 3.0]
    assert wasserstein_binned(counts, counts, centroids, 1.0) == 0.0
    # Shares matter, not totals.
    assert wasserstein_binned(counts, [c * 7 for c in counts], centroids, 1.0) == pytest.approx(0)
    # A quarter of the mass moves one bin (gap 1.0) up: W1 = 0.25, over std 2 -> 0.125.
    assert wasserstein_binned([5, 5, 5, 5], [0, 10, 5, 5], centroids, 2.0) == pytest.approx(0.125)


def test_constant_reference_column() -> None:
    ref = numeric_profile(np.full(1_000, 3.5))
    assert ref.std == 0
    assert ref.edges == []
    assert ref.counts == [1_000]
    counts, missing = numeric_bins(np.full(200, 3.5), ref.edges)
    drift = numeric_drift("c", ref, counts, missing)
    assert drift.wasserstein == 0.0
    assert drift.psi == pytest.approx(0.0)
    assert drift.not_judged is None

    # A constant reference whose profile keeps bins around the constant: any value off it is
    # an unbounded change relative to a spread of 0; values on it are no change at all.
    boxed = NumericProfile(
        edges=[3.5, math.nextafter(3.5, math.inf)],
        counts=[0, 1_000, 0],
        centroids=[0.0, 3.5, 0.0],
        missing=0,
        mean=3.5,
        std=0.0,
    )
    on, _ = numeric_bins(np.full(200, 3.5), boxed.edges)
    off, _ = numeric_bins(np.array([3.5] * 199 + [4.0]), boxed.edges)
    assert wasserstein_binned(boxed.counts, on, boxed.centroids, 0.0, boxed.edges) == 0.0
    assert wasserstein_binned(boxed.counts, off, boxed.centroids, 0.0, boxed.edges) == math.inf
    flagged = judge(numeric_drift("c", boxed, off, 0), {"wasserstein": 0.1})
    assert flagged.flagged == ("wasserstein",)


def test_constant_current_window_against_a_spread_reference(
    normal_ref: tuple[FloatArray, NumericProfile],
) -> None:
    ref_raw, ref = normal_ref
    cur_raw = np.full(500, 1.3)
    counts, _ = numeric_bins(cur_raw, ref.edges)
    binned = wasserstein_binned(ref.counts, counts, ref.centroids, ref.std)
    raw = wasserstein_distance(ref_raw, cur_raw) / ref_raw.std()
    # 1.3 is read at its bin's reference centroid (~1.45): binned may also read high.
    assert binned == pytest.approx(raw, rel=0.10)


def test_bin_positions_for_bins_the_reference_left_empty() -> None:
    counts = [10, 0, 10, 0]
    centroids = [0.0, 0.0, 2.0, 0.0]  # what numeric_profile stores for empty bins
    assert bin_positions(centroids, counts, [1.0, 1.5, 3.0]).tolist() == [0.0, 1.25, 2.0, 3.0]
    assert bin_positions(centroids, counts).tolist() == [0.0, 1.0, 2.0, 2.0]
    # Traffic landing in the empty middle bin sits between its neighbours.
    w = wasserstein_binned(counts, [0, 20, 0, 0], centroids, 1.0, [1.0, 1.5, 3.0])
    assert w == pytest.approx(0.5 * 1.25 + 0.5 * 0.75)


# -- PSI ----------------------------------------------------------------------------------------


def test_psi_matches_the_formula_on_independently_binned_raw_values(
    normal_ref: tuple[FloatArray, NumericProfile],
) -> None:
    ref_raw, ref = normal_ref
    cur_raw = np.random.default_rng(5).normal(0.3, 1.2, 10_000)
    counts, _ = numeric_bins(cur_raw, ref.edges)
    expected = hand_psi(raw_shares(ref_raw, ref.edges), raw_shares(cur_raw, ref.edges))
    assert psi(ref.counts, counts) == pytest.approx(expected, rel=1e-9)
    # Symmetric, zero on itself.
    assert psi(counts, ref.counts) == pytest.approx(expected, rel=1e-9)
    assert psi(ref.counts, ref.counts) == 0.0


def test_psi_floors_empty_bins_at_eps() -> None:
    ref = np.array([500, 300, 200, 0])
    cur = np.array([0, 300, 200, 500])
    eps = 1e-4
    p = np.maximum(ref / ref.sum(), eps)
    q = np.maximum(cur / cur.sum(), eps)
    expected = hand_psi(p / p.sum(), q / q.sum())
    got = psi(ref, cur, eps=eps)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got is not None
    assert math.isfinite(got)
    assert got > 5


# -- L-infinity, rates --------------------------------------------------------------------------


def test_linf_and_unseen_rate_match_raw_share_differences() -> None:
    rng = np.random.default_rng(6)
    ref_raw = rng.choice(FIVE, 100_000, p=FIVE_P)
    cats = [*FIVE, "new1", "new2"]
    cur_raw = rng.choice(cats, 10_000, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02]).astype(object)
    cur_raw[:400] = None
    profile = categorical_profile(ref_raw.tolist())
    counts, other, missing = categorical_bins(cur_raw.tolist(), profile.categories)

    # Independent: shares of raw values, unseen categories pooled as "other", missing dropped.
    present = np.array([v for v in cur_raw if v is not None])
    pooled = np.where(np.isin(present, FIVE), present, "other")
    labels = [*FIVE, "other"]
    p = np.array([np.mean(ref_raw == c) for c in labels])
    q = np.array([np.mean(pooled == c) for c in labels])

    got = linf(categorical_counts(profile.counts, profile.other), categorical_counts(counts, other))
    assert got == pytest.approx(np.max(np.abs(q - p)), rel=1e-12)
    assert unseen_rate(counts, other) == pytest.approx(np.mean(~np.isin(present, FIVE)))
    assert missing_rate(missing, len(cur_raw)) == pytest.approx(0.04)

    drift = categorical_drift("c", profile, counts, other, missing)
    assert drift.unseen_rate == pytest.approx(0.05, abs=0.01)
    assert drift.unseen_delta == drift.unseen_rate  # the reference had no unseen values
    assert drift.psi == pytest.approx(
        hand_psi(np.maximum(p, 1e-4) / np.maximum(p, 1e-4).sum(), q), rel=1e-6
    )
    judged = judge(drift, {"linf": 0.05, "unseen": 0.02, "psi": 0.1, "missing": 0.02})
    assert "unseen" in judged.flagged
    assert judged.decided_by in judged.flagged


def test_design_facts_for_a_ten_point_share_shift_at_10k_rows() -> None:
    rng = np.random.default_rng(7)
    profile = categorical_profile(rng.choice(FIVE, 100_000, p=FIVE_P).tolist())
    ref = categorical_counts(profile.counts, profile.other)

    def window(points: float) -> FloatArray:
        values = rng.choice(FIVE, 10_000, p=shifted_shares(FIVE_P, 1, points)).tolist()
        counts, other, _ = categorical_bins(values, profile.categories)
        return categorical_counts(counts, other)

    shifted = np.array([linf(ref, window(0.10)) for _ in range(20)], dtype=np.float64)
    steady = np.array([linf(ref, window(0.0)) for _ in range(20)], dtype=np.float64)
    assert np.median(shifted) == pytest.approx(0.10, abs=0.005)
    assert shifted.min() > 0.085
    assert np.median(steady) <= 0.008
    assert steady.max() <= 0.015


def test_missing_rate_and_deltas_match_raw() -> None:
    rng = np.random.default_rng(8)
    ref_raw = rng.normal(size=50_000)
    ref_raw[rng.random(50_000) < 0.05] = np.nan
    cur_raw = rng.normal(size=2_000)
    cur_raw[rng.random(2_000) < 0.20] = np.nan
    ref = numeric_profile(ref_raw)
    counts, missing = numeric_bins(cur_raw, ref.edges)
    drift = numeric_drift("x", ref, counts, missing)
    assert drift.missing_rate == pytest.approx(np.isnan(cur_raw).mean())
    assert drift.missing_delta == pytest.approx(np.isnan(cur_raw).mean() - np.isnan(ref_raw).mean())
    assert rate_delta(5, 100, 1, 10) == pytest.approx(0.05)
    judged = judge(drift, {"wasserstein": 0.1, "psi": 0.1, "missing": 0.02})
    assert judged.flagged == ("missing",)
    assert judged.decided_by == "missing"


# -- windows that cannot be judged, single categories, bad input --------------------------------


def test_empty_window_is_not_judged(world: World) -> None:
    num = world.numeric["x_norm"]
    drift = numeric_drift("x_norm", num, np.zeros(len(num.counts)), 0)
    assert drift.not_judged == "empty window"
    assert not drift.judged
    assert drift.psi is None
    assert drift.wasserstein is None
    assert drift.missing_rate is None
    judged = judge(drift, {"wasserstein": 0.1, "psi": 0.1, "missing": 0.02})
    assert judged.flagged == ()
    assert judged.decided_by is None
    assert not judged.drifted

    cat = world.categorical["c_five"]
    drift = categorical_drift("c_five", cat, np.zeros(len(cat.counts)), 0, 0)
    assert drift.not_judged == "empty window"
    assert (drift.linf, drift.psi, drift.unseen_rate, drift.missing_rate) == (None,) * 4

    assert psi([1, 2], [0, 0]) is None
    assert linf([0, 0], [1, 2]) is None
    assert wasserstein_binned([1, 2], [0, 0], [0.0, 1.0], 1.0) is None
    assert missing_rate(0, 0) is None
    assert unseen_rate([0, 0], 0) is None


def test_all_missing_window_judges_only_the_missing_rate(world: World) -> None:
    num = world.numeric["x_miss"]
    counts, missing = numeric_bins(np.full(1_000, np.nan), num.edges)
    drift = numeric_drift("x_miss", num, counts, missing)
    assert drift.not_judged == "all values missing"
    assert drift.judged
    assert drift.psi is None
    assert drift.wasserstein is None
    assert drift.missing_rate == 1.0
    ref_rate = num.missing / (sum(num.counts) + num.missing)
    assert drift.missing_delta == pytest.approx(1.0 - ref_rate)
    judged = judge(drift, {"wasserstein": 0.1, "psi": 0.1, "missing": 0.02})
    assert judged.flagged == ("missing",)

    cat = world.categorical["c_bin"]
    counts_c, other, missing_c = categorical_bins([None] * 300, cat.categories)
    drift_c = categorical_drift("c_bin", cat, counts_c, other, missing_c)
    assert drift_c.linf is None
    assert drift_c.unseen_rate is None
    assert drift_c.missing_rate == 1.0


def test_single_category() -> None:
    profile = categorical_profile(["only"] * 5_000)
    assert profile.categories == ["only"]
    ref = categorical_counts(profile.counts, profile.other)
    counts, other, _ = categorical_bins(["only"] * 900, profile.categories)
    assert linf(ref, categorical_counts(counts, other)) == 0.0
    assert psi(ref, categorical_counts(counts, other)) == pytest.approx(0.0)

    counts, other, missing = categorical_bins(["only"] * 900 + ["new"] * 100, profile.categories)
    drift = categorical_drift("c", profile, counts, other, missing)
    assert drift.linf == pytest.approx(0.10)
    assert drift.unseen_rate == pytest.approx(0.10)
    assert drift.psi is not None
    assert math.isfinite(drift.psi)


def test_reference_without_values_is_not_judged() -> None:
    ref = numeric_profile(np.full(100, np.nan))
    counts, missing = numeric_bins(np.array([1.0, 2.0]), ref.edges)
    drift = numeric_drift("x", ref, counts, missing)
    assert drift.not_judged == "reference has no values"
    assert drift.wasserstein is None
    assert drift.missing_delta == pytest.approx(-1.0)


def test_bad_count_vectors_raise() -> None:
    with pytest.raises(ValueError, match="bins"):
        psi([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        linf([1, -2], [1, 2])
    with pytest.raises(ValueError, match="centroids"):
        wasserstein_binned([1, 2], [1, 2], [0.0], 1.0)
    with pytest.raises(ValueError, match="rows"):
        missing_rate(5, 3)


def test_judge_picks_the_strongest_flag_and_otherwise_the_primary_statistic() -> None:
    drift = FeatureDrift(
        feature="x", kind="numeric", rows=1_000, missing=50, psi=0.3, wasserstein=0.2,
        missing_rate=0.05, missing_delta=-0.05,
    )  # fmt: skip
    judged = judge(drift, {"wasserstein": 0.1, "psi": 0.1, "missing": 0.02})
    assert judged.flagged == ("psi", "missing", "wasserstein")  # ratios 3.0, 2.5, 2.0
    assert judged.decided_by == "psi"
    assert judged.drifted
    quiet = judge(drift, {"wasserstein": 0.5, "psi": 0.5, "missing": 0.5})
    assert quiet.flagged == ()
    assert quiet.decided_by == "wasserstein"
    assert not quiet.drifted
    # Frozen: a result is a value.
    with pytest.raises(AttributeError):
        drift.psi = 0.0  # type: ignore[misc]
