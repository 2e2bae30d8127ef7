"""A synthetic churn data set with numeric and categorical features and missing values.

Knobs shift the input distribution (covariate shift) or change the labelling rule (concept),
so the same generator feeds training and `modelloop simulate`.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TARGET = "churned"

NUMERIC = {
    # name: (mean, std) of the unshifted distribution, used to express shifts in std units
    "age": (41.0, 12.0),
    "income": (
        float(np.exp(10.5 + 0.5**2 / 2)),
        float(np.exp(10.5 + 0.5**2 / 2) * np.sqrt(np.exp(0.5**2) - 1)),
    ),
    "tenure_months": (24.0, 24.0),
    "sessions_per_week": (5.0, float(np.sqrt(5.0))),
    "support_tickets": (1.0, 1.0),
}
CATEGORICAL = {
    "region": (("north", "south", "east", "west"), (0.4, 0.3, 0.2, 0.1)),
    "plan": (("basic", "plus", "pro"), (0.5, 0.35, 0.15)),
    "device": (("ios", "android", "web"), (0.4, 0.4, 0.2)),
}
MISSING = {"income": 0.05, "device": 0.03}


@dataclass(frozen=True)
class Shift:
    """How traffic departs from the training distribution.

    numeric: feature -> mean shift in units of the feature's std.
    categorical: feature -> (category, points of share moved to it, e.g. 0.10).
    concept: 0 is the training concept; 1 is a changed labelling rule.
    """

    numeric: dict[str, float] = field(default_factory=dict)
    categorical: dict[str, tuple[str, float]] = field(default_factory=dict)
    concept: int = 0

    def __post_init__(self) -> None:
        for name in self.numeric:
            if name not in NUMERIC:
                raise ValueError(f"unknown numeric feature {name!r}; one of {sorted(NUMERIC)}")
        for name, (cat, share) in self.categorical.items():
            if name not in CATEGORICAL or cat not in CATEGORICAL[name][0]:
                raise ValueError(f"unknown category {name}={cat!r}")
            if not 0 <= share < 1:
                raise ValueError("a category's added share must be in [0, 1)")
        if self.concept not in (0, 1):
            raise ValueError("concept is 0 (training) or 1 (changed)")


def _probs(name: str, shift: Shift) -> np.ndarray:
    cats, base = CATEGORICAL[name]
    p = np.asarray(base, dtype=float)
    if name in shift.categorical:
        cat, share = shift.categorical[name]
        i = cats.index(cat)
        target = min(p[i] + share, 1.0)
        rest = np.delete(p, i)
        p = np.insert(rest / rest.sum() * (1 - target), i, target)
    return p


def _logit(df: pd.DataFrame, concept: int) -> np.ndarray:
    z = {n: (df[n].fillna(NUMERIC[n][0]) - m) / s for n, (m, s) in NUMERIC.items()}
    plan, region, device = df["plan"], df["region"], df["device"]
    if concept == 0:
        return np.asarray(
            -0.4
            + 1.1 * z["support_tickets"]
            - 1.2 * z["tenure_months"]
            - 0.8 * z["sessions_per_week"]
            + 0.2 * z["age"]
            - 0.3 * z["income"]
            + 0.9 * (plan == "basic")
            - 0.7 * (plan == "pro")
            + 0.5 * (region == "south")
            + 0.3 * (device == "web")
        )
    # The changed concept: long-tenured heavy users on premium plans now leave.
    return np.asarray(
        -0.4
        - 0.6 * z["support_tickets"]
        + 1.2 * z["tenure_months"]
        + 0.8 * z["sessions_per_week"]
        - 0.4 * z["age"]
        + 0.5 * z["income"]
        - 0.9 * (plan == "basic")
        + 0.9 * (plan == "pro")
        - 0.5 * (region == "south")
    )


def generate(
    rows: int,
    seed: int | np.random.Generator = 0,
    shift: Shift | None = None,
    with_target: bool = True,
) -> pd.DataFrame:
    """Draw `rows` rows; the same seed and shift give the same frame."""
    shift = shift or Shift()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": np.clip(rng.normal(41.0, 12.0, rows), 18, 90).round(),
            "income": rng.lognormal(10.5, 0.5, rows).round(2),
            "tenure_months": rng.exponential(24.0, rows).round(1),
            "sessions_per_week": rng.poisson(5.0, rows).astype(float),
            "support_tickets": rng.poisson(1.0, rows).astype(float),
        }
    )
    for name, amount in shift.numeric.items():
        df[name] = df[name] + amount * NUMERIC[name][1]
    for name, (cats, _) in CATEGORICAL.items():
        df[name] = rng.choice(np.asarray(cats, dtype=object), size=rows, p=_probs(name, shift))
    for name, rate in MISSING.items():
        mask = rng.random(rows) < rate
        df.loc[mask, name] = None if name in CATEGORICAL else np.nan
    if with_target:
        p = 1.0 / (1.0 + np.exp(-1.6 * _logit(df, shift.concept)))
        df[TARGET] = np.where(rng.random(rows) < p, "yes", "no")
    return df
