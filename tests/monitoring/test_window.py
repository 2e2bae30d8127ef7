"""Windows fold traffic onto the reference bins; merging windows equals folding all rows."""

import numpy as np
import pytest

from modelloop.monitoring.window import Folder, Window
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.profile import categorical_profile, numeric_profile


@pytest.fixture
def folder() -> Folder:
    rng = np.random.default_rng(0)
    ref = ReferenceProfile(
        rows=1000,
        numeric={"x": numeric_profile(rng.normal(size=1000))},
        categorical={"c": categorical_profile(list(rng.choice(["a", "b"], size=1000)))},
        score=numeric_profile(rng.random(1000)),
        predicted=categorical_profile(list(rng.choice(["no", "yes"], size=1000))),
    )
    meta = ModelMetadata.model_construct(task="classification", classes=["no", "yes"])
    return Folder(meta, ref)


def _rows(
    n: int, seed: int
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[float]]:
    rng = np.random.default_rng(seed)
    feats = [
        {"x": float(v) if i % 10 else None, "c": str(c) if i % 7 else "zzz"}
        for i, (v, c) in enumerate(zip(rng.normal(size=n), rng.choice(["a", "b"], n), strict=True))
    ]
    outs = [
        {"label": "yes" if p > 0.5 else "no", "probabilities": {"no": 1 - p, "yes": p}}
        for p in rng.random(n)
    ]
    return feats, outs, [float(i) for i in range(n)]


def test_merge_equals_folding_everything(folder: Folder) -> None:
    f, o, t = _rows(300, 1)
    whole = folder.fold(f, o, t)
    parts = folder.fold(f[:100], o[:100], t[:100]).merge(folder.fold(f[100:], o[100:], t[100:]))
    assert whole.rows == parts.rows == 300
    assert (whole.numeric["x"][0] == parts.numeric["x"][0]).all()
    assert whole.numeric["x"][1] == parts.numeric["x"][1] == 30  # every tenth x is missing
    assert (whole.categorical["c"][0] == parts.categorical["c"][0]).all()
    assert whole.categorical["c"][1] == parts.categorical["c"][1] == 43  # "zzz" is other
    assert (whole.score[0] == parts.score[0]).all()
    assert (whole.start, whole.end) == (parts.start, parts.end) == (0.0, 299.0)


def test_window_round_trips_through_json(folder: Folder) -> None:
    f, o, t = _rows(50, 2)
    w = folder.fold(f, o, t)
    back = Window.from_dict(w.to_dict())
    assert back.to_dict() == w.to_dict()


def test_score_is_the_positive_class_probability(folder: Folder) -> None:
    assert folder.score_of({"label": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}) == 0.8
    assert np.isnan(folder.score_of({"label": "yes"}))
