"""Drift thresholds above the sampling noise of the window size.

A statistic between a window of n rows and the reference is never 0, even with no drift at all:
both are samples. `noise_levels` measures how large each statistic gets by chance, by drawing
`draws` windows of n rows from the reference's own bin proportions (a seeded multinomial,
vectorised) and taking a high quantile of the statistic over them. By default it also redraws the
reference from itself at its own size (two-sample), because the reference is a sample too: with a
10k-row reference and 1M-row windows, the reference's noise is what dominates.

The threshold of a statistic for a window of n rows is

    max(floor, multiplier * noise(n))

The floor is the smallest effect worth acting on however many rows prove it; the multiplier keeps
the false-positive rate near 0 over many windows and features (the quantile alone would flag
1 window in 1/(1-quantile)).

Noise scales with the window size like the sampling variance: sqrt(1/n + 1/N) for W1, L-infinity,
missing and unseen rates, and (1/n + 1/N) for PSI (N: reference rows; drop 1/N for one-sample).
`NoiseCalibration` stores levels measured at a few sizes and interpolates between them (and
extrapolates with that law), so the monitor does not resample for every window size.
"""

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelloop.monitoring.stats import (
    CATEGORICAL_STATISTICS,
    NUMERIC_STATISTICS,
    PSI_EPS,
    FloatArray,
    Statistic,
    bin_positions,
    categorical_counts,
    linf_rows,
    psi_rows,
    wasserstein_rows,
)
from modelloop.store.metadata import CategoricalProfile, NumericProfile

Levels = dict[str, dict[Statistic, float]]
"""feature -> statistic -> value (a noise level or a threshold)."""

DEFAULT_FLOORS: Mapping[Statistic, float] = {
    "wasserstein": 0.10,  # a tenth of a reference std
    "linf": 0.05,  # five points of one category's share
    "psi": 0.10,  # the conventional "moderate shift" mark
    "missing": 0.02,  # two points of missing values
    "unseen": 0.02,  # two points of categories never seen in training
}
DEFAULT_QUANTILE = 0.99
DEFAULT_DRAWS = 2_000
DEFAULT_MULTIPLIER = 1.75
# Why these: the 99th percentile of 2,000 draws is estimated within ~4 % (a 99.9th within ~7 %,
# a max not at all), and for these statistics the 1-in-100k level of the no-drift distribution
# sits at 1.5-1.95 x the 99th percentile (measured on 400k draws at n=1,000: W1, L-infinity,
# missing rate, PSI on >= 5 bins). 1.75 x q99 keeps false flags near 1 in 100k checks, while a
# 0.25-std mean shift (W1 ~0.25 vs thresholds ~0.15) and a 10-point share shift (L-inf ~0.10 vs
# ~0.07) are still flagged at n=1,000. PSI on 2-3 bins has a longer tail; its 0.1 floor covers it.
DEFAULT_SIZES = (1_000, 10_000, 100_000)

EXPONENT: Mapping[Statistic, float] = {
    "wasserstein": 0.5,
    "linf": 0.5,
    "missing": 0.5,
    "unseen": 0.5,
    "psi": 1.0,
}
"""Noise ~ (1/n + 1/N) ** EXPONENT[statistic]."""


def _rng(seed: int, feature: str, n: int) -> np.random.Generator:
    """One generator per (seed, feature, n): results do not depend on feature order."""
    return np.random.default_rng([seed, zlib.crc32(feature.encode()), n])


def _draw(
    rng: np.random.Generator, counts: FloatArray, n: int, draws: int, two_sample: bool
) -> tuple[FloatArray, FloatArray]:
    """`draws` windows of n rows, and as many references of N rows (or the reference itself)."""
    total = float(counts.sum())
    p = counts / total
    cur = rng.multinomial(n, p, size=draws).astype(np.float64)
    if two_sample:
        ref = rng.multinomial(int(total), p, size=draws).astype(np.float64)
    else:
        ref = np.broadcast_to(counts, cur.shape).astype(np.float64)
    return ref, cur


def _level(values: FloatArray, quantile: float) -> float:
    ok = values[~np.isnan(values)]
    if ok.size == 0:
        return 0.0
    return max(0.0, float(np.quantile(ok, quantile)))


def _rate(part: FloatArray, rows: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = part / rows
    return out


def numeric_noise(
    feature: str,
    ref: NumericProfile,
    n: int,
    *,
    draws: int = DEFAULT_DRAWS,
    quantile: float = DEFAULT_QUANTILE,
    seed: int = 0,
    two_sample: bool = True,
    eps: float = PSI_EPS,
) -> dict[Statistic, float]:
    """Noise levels of W1, PSI and the missing rate for windows of n rows of this feature."""
    bins = np.asarray(ref.counts, dtype=np.float64)
    counts = np.append(bins, float(ref.missing))  # last column: missing
    if n <= 0 or counts.sum() <= 0:
        return dict.fromkeys(NUMERIC_STATISTICS, 0.0)
    r, c = _draw(_rng(seed, feature, n), counts, n, draws, two_sample)
    x = bin_positions(ref.centroids, bins, ref.edges)
    return {
        "wasserstein": _level(wasserstein_rows(r[:, :-1], c[:, :-1], x, ref.std), quantile),
        "psi": _level(psi_rows(r[:, :-1], c[:, :-1], eps), quantile),
        "missing": _level(
            np.abs(_rate(c[:, -1], c.sum(axis=1)) - _rate(r[:, -1], r.sum(axis=1))), quantile
        ),
    }


def categorical_noise(
    feature: str,
    ref: CategoricalProfile,
    n: int,
    *,
    draws: int = DEFAULT_DRAWS,
    quantile: float = DEFAULT_QUANTILE,
    seed: int = 0,
    two_sample: bool = True,
    eps: float = PSI_EPS,
) -> dict[Statistic, float]:
    """Noise levels of L-infinity, PSI, the unseen share and the missing rate (n rows)."""
    counts = np.append(categorical_counts(ref.counts, ref.other), float(ref.missing))
    if n <= 0 or counts.sum() <= 0:
        return dict.fromkeys(CATEGORICAL_STATISTICS, 0.0)
    r, c = _draw(_rng(seed, feature, n), counts, n, draws, two_sample)
    rp, cp = r[:, :-1], c[:, :-1]  # present values, `other` last
    return {
        "linf": _level(linf_rows(rp, cp), quantile),
        "psi": _level(psi_rows(rp, cp, eps), quantile),
        "unseen": _level(
            _rate(cp[:, -1], cp.sum(axis=1)) - _rate(rp[:, -1], rp.sum(axis=1)), quantile
        ),
        "missing": _level(
            np.abs(_rate(c[:, -1], c.sum(axis=1)) - _rate(r[:, -1], r.sum(axis=1))), quantile
        ),
    }


def noise_levels(
    numeric: Mapping[str, NumericProfile],
    categorical: Mapping[str, CategoricalProfile],
    n: int,
    *,
    draws: int = DEFAULT_DRAWS,
    quantile: float = DEFAULT_QUANTILE,
    seed: int = 0,
    two_sample: bool = True,
) -> Levels:
    """Noise levels of every statistic of every feature, for windows of n rows."""
    kw: dict[str, Any] = {
        "draws": draws,
        "quantile": quantile,
        "seed": seed,
        "two_sample": two_sample,
    }
    out: Levels = {name: numeric_noise(name, p, n, **kw) for name, p in numeric.items()}
    out.update({name: categorical_noise(name, p, n, **kw) for name, p in categorical.items()})
    return out


def thresholds_from_noise(
    noise: Mapping[str, Mapping[Statistic, float]],
    *,
    floors: Mapping[Statistic, float] = DEFAULT_FLOORS,
    multiplier: float = DEFAULT_MULTIPLIER,
) -> Levels:
    """max(floor, multiplier * noise) for every feature and statistic."""
    return {
        feature: {s: max(floors.get(s, 0.0), multiplier * v) for s, v in levels.items()}
        for feature, levels in noise.items()
    }


def thresholds_at(
    numeric: Mapping[str, NumericProfile],
    categorical: Mapping[str, CategoricalProfile],
    n: int,
    *,
    floors: Mapping[Statistic, float] = DEFAULT_FLOORS,
    multiplier: float = DEFAULT_MULTIPLIER,
    draws: int = DEFAULT_DRAWS,
    quantile: float = DEFAULT_QUANTILE,
    seed: int = 0,
    two_sample: bool = True,
) -> Levels:
    """Thresholds of every statistic of every feature of a profile for windows of n rows."""
    noise = noise_levels(
        numeric, categorical, n, draws=draws, quantile=quantile, seed=seed, two_sample=two_sample
    )
    return thresholds_from_noise(noise, floors=floors, multiplier=multiplier)


def _variance(n: float, reference_rows: int | None) -> float:
    return 1.0 / n + (1.0 / reference_rows if reference_rows else 0.0)


def scale_noise(
    noise: float,
    n_from: int,
    n_to: int,
    statistic: Statistic,
    reference_rows: int | None = None,
) -> float:
    """Noise measured at n_from rows, carried to n_to rows by the sampling law (module doc).

    Pass `reference_rows` when the noise was measured two-sample (the default), None otherwise.
    """
    if n_from <= 0 or n_to <= 0:
        raise ValueError("window sizes must be positive")
    ratio = _variance(n_to, reference_rows) / _variance(n_from, reference_rows)
    return float(noise * ratio ** EXPONENT[statistic])


@dataclass(frozen=True)
class NoiseCalibration:
    """Noise levels measured at a few window sizes; `noise_at` serves any other size.

    Between two measured sizes the level is interpolated linearly in log(level) against
    log(1/n + 1/N), which is exact for the sampling law and absorbs where the measured levels
    depart from it (PSI's smoothing of empty bins at small n); beyond them it is carried from the
    nearest measured size by `scale_noise`. Plain tuples and dicts: `to_dict` is JSON-ready.
    """

    sizes: tuple[int, ...]
    levels: Mapping[str, Mapping[Statistic, tuple[float, ...]]]
    reference_rows: Mapping[str, int]
    two_sample: bool = True
    quantile: float = DEFAULT_QUANTILE
    draws: int = DEFAULT_DRAWS
    seed: int = 0

    def noise_at(self, n: int) -> Levels:
        """Noise levels for windows of n rows (a few microseconds per feature: no resampling)."""
        if n <= 0:
            raise ValueError("window size must be positive")
        return {
            feature: {s: self._one(feature, s, values, n) for s, values in stats.items()}
            for feature, stats in self.levels.items()
        }

    def thresholds_at(
        self,
        n: int,
        *,
        floors: Mapping[Statistic, float] = DEFAULT_FLOORS,
        multiplier: float = DEFAULT_MULTIPLIER,
    ) -> Levels:
        return thresholds_from_noise(self.noise_at(n), floors=floors, multiplier=multiplier)

    def _one(self, feature: str, stat: Statistic, values: Sequence[float], n: int) -> float:
        big_n = self.reference_rows.get(feature) if self.two_sample else None
        sizes = self.sizes
        if n in sizes:
            return values[sizes.index(n)]
        if n <= sizes[0]:
            return scale_noise(values[0], sizes[0], n, stat, big_n)
        if n >= sizes[-1]:
            return scale_noise(values[-1], sizes[-1], n, stat, big_n)
        i = int(np.searchsorted(sizes, n, side="right"))
        lo, hi = values[i - 1], values[i]
        if lo <= 0 or hi <= 0:  # no noise at one size (e.g. never missing): carry the other
            j = i - 1 if lo > 0 else i
            return scale_noise(values[j], sizes[j], n, stat, big_n)
        u0, u1, u = (math.log(_variance(s, big_n)) for s in (sizes[i - 1], sizes[i], n))
        t = (u - u0) / (u1 - u0) if u1 != u0 else 0.0
        return math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sizes": list(self.sizes),
            "levels": {f: {s: list(v) for s, v in st.items()} for f, st in self.levels.items()},
            "reference_rows": dict(self.reference_rows),
            "two_sample": self.two_sample,
            "quantile": self.quantile,
            "draws": self.draws,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NoiseCalibration":
        return cls(
            sizes=tuple(int(s) for s in data["sizes"]),
            levels={
                f: {s: tuple(float(x) for x in v) for s, v in st.items()}
                for f, st in data["levels"].items()
            },
            reference_rows={f: int(r) for f, r in data["reference_rows"].items()},
            two_sample=bool(data["two_sample"]),
            quantile=float(data["quantile"]),
            draws=int(data["draws"]),
            seed=int(data["seed"]),
        )


def calibrate(
    numeric: Mapping[str, NumericProfile],
    categorical: Mapping[str, CategoricalProfile],
    sizes: Iterable[int] = DEFAULT_SIZES,
    *,
    draws: int = DEFAULT_DRAWS,
    quantile: float = DEFAULT_QUANTILE,
    seed: int = 0,
    two_sample: bool = True,
) -> NoiseCalibration:
    """Measure noise levels at each of `sizes` (at training time, to store with the reference)."""
    ns = tuple(sorted({int(s) for s in sizes}))
    if not ns or ns[0] <= 0:
        raise ValueError("calibration sizes must be positive")
    per_size = [
        noise_levels(
            numeric,
            categorical,
            n,
            draws=draws,
            quantile=quantile,
            seed=seed,
            two_sample=two_sample,
        )
        for n in ns
    ]
    levels = {
        feature: {s: tuple(level[feature][s] for level in per_size) for s in per_size[0][feature]}
        for feature in per_size[0]
    }
    rows = {f: sum(p.counts) + p.missing for f, p in numeric.items()}
    rows.update({f: sum(p.counts) + p.other + p.missing for f, p in categorical.items()})
    return NoiseCalibration(
        sizes=ns,
        levels=levels,
        reference_rows=rows,
        two_sample=two_sample,
        quantile=quantile,
        draws=draws,
        seed=seed,
    )
