"""Fixtures: a 100k-row reference sample of the synthetic world and its profile."""

import numpy as np
import pytest

from modelloop.store.metadata import CategoricalProfile, NumericProfile
from modelloop.store.profile import categorical_profile, numeric_profile

from .world import Column, World


@pytest.fixture(scope="session")
def reference_raw() -> dict[str, Column]:
    return World.draw(np.random.default_rng(20240601), 100_000)


@pytest.fixture(scope="session")
def world(reference_raw: dict[str, Column]) -> World:
    numeric: dict[str, NumericProfile] = {}
    categorical: dict[str, CategoricalProfile] = {}
    for name, column in reference_raw.items():
        if name.startswith("x_"):
            numeric[name] = numeric_profile(np.asarray(column, dtype=np.float64), n_bins=20)
        else:
            assert isinstance(column, list)
            categorical[name] = categorical_profile(column)
    return World(numeric=numeric, categorical=categorical)
