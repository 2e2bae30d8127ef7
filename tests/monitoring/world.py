"""A synthetic world of eight features: raw windows of traffic and their drift statistics."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelloop.monitoring.stats import FeatureDrift, categorical_drift, numeric_drift
from modelloop.store.metadata import CategoricalProfile, NumericProfile
from modelloop.store.profile import (
    categorical_bins,
    numeric_bins,
)

FIVE = ["a", "b", "c", "d", "e"]
FIVE_P = np.array([0.35, 0.25, 0.20, 0.12, 0.08])
ZIPF = [f"k{i:02d}" for i in range(30)]
ZIPF_P = (1 / np.arange(1, 31)) / (1 / np.arange(1, 31)).sum()

Column = npt.NDArray[np.float64] | list[object]


def shifted_shares(p: npt.NDArray[np.float64], i: int, points: float) -> npt.NDArray[np.float64]:
    """Category i gains `points` of share; the others give it up in proportion."""
    q: npt.NDArray[np.float64] = p * (1 - (p[i] + points)) / (1 - p[i])
    q[i] = p[i] + points
    return q


@dataclass
class World:
    """Five numeric and three categorical features, from which windows are drawn."""

    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]

    @staticmethod
    def draw(
        rng: np.random.Generator, n: int, mean_shift: float = 0.0, share_shift: float = 0.0
    ) -> dict[str, Column]:
        """n raw rows; `mean_shift` moves x_norm (std 1), `share_shift` moves c_five's "b"."""
        x_miss = rng.normal(50, 10, n)
        x_miss[rng.random(n) < 0.05] = np.nan
        c_bin = rng.choice(np.array(["yes", "no"], dtype=object), n, p=[0.3, 0.7])
        c_bin[rng.random(n) < 0.02] = None
        return {
            "x_norm": rng.normal(0, 1, n) + mean_shift,
            "x_logn": rng.lognormal(0, 0.75, n),
            "x_unif": rng.uniform(-3, 7, n),
            "x_miss": x_miss,
            "x_pois": rng.poisson(3, n).astype(np.float64),
            "c_five": rng.choice(FIVE, n, p=shifted_shares(FIVE_P, 1, share_shift)).tolist(),
            "c_zipf": rng.choice(ZIPF, n, p=ZIPF_P).tolist(),
            "c_bin": c_bin.tolist(),
        }

    def drifts(self, raw: dict[str, Column]) -> list[FeatureDrift]:
        """Fold a raw window into the reference bins, as the monitor does, and score it."""
        out = []
        for name, num in self.numeric.items():
            values = raw[name]
            assert isinstance(values, np.ndarray)
            counts, missing = numeric_bins(values, num.edges)
            out.append(numeric_drift(name, num, counts, missing))
        for name, cat in self.categorical.items():
            column = raw[name]
            assert isinstance(column, list)
            counts, other, missing = categorical_bins(column, cat.categories)
            out.append(categorical_drift(name, cat, counts, other, missing))
        return out
