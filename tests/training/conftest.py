"""Trained models shared by the training tests: each (data set, estimator) is trained once."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelloop.store.registry import FolderRegistry, Registry
from modelloop.training.pipeline import TrainRequest, TrainResult, run_training

SYNTHETIC_ROWS = 2000

Trained = tuple[TrainResult, Registry]
TrainOnce = Callable[[str, str], Trained]


@pytest.fixture(scope="session", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads crawl when the machine is busy (measured on this
    2-core box with one other busy process: iris 0.4 s -> 6.5 s, once > 120 s), so the tests
    train on one thread; the CLI tests set OMP_NUM_THREADS=1 for the same reason."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def model_name(dataset: str, estimator: str) -> str:
    return f"{dataset}-{estimator}".replace("_", "-")


@pytest.fixture(scope="session")
def train_once(tmp_path_factory: pytest.TempPathFactory) -> TrainOnce:
    """train_once(dataset, estimator): train (the first time only) into a session registry."""
    registry = FolderRegistry(Path(tmp_path_factory.mktemp("shared")) / "registry")
    cache: dict[tuple[str, str], Trained] = {}

    def train(dataset: str, estimator: str) -> Trained:
        key = (dataset, estimator)
        if key not in cache:
            req = TrainRequest(
                model=model_name(dataset, estimator),
                dataset=dataset,
                estimator=estimator,
                rows=SYNTHETIC_ROWS,
                seed=0,
            )
            cache[key] = (run_training(req, registry), registry)
        return cache[key]

    return train
