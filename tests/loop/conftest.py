import shutil
from pathlib import Path

import pytest

from modelloop.store.registry import FolderRegistry

MODEL = "default"


@pytest.fixture(scope="session")
def loop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model (synthetic churn data, HistGradientBoosting), trained once."""
    from threadpoolctl import threadpool_limits

    from modelloop.training.pipeline import TrainRequest, run_training

    home = tmp_path_factory.mktemp("loop-template")
    with threadpool_limits(1):
        run_training(TrainRequest(model=MODEL), FolderRegistry(home / "registry"))
    return home


def fresh_home(template: Path, dest: Path) -> Path:
    shutil.copytree(template / "registry", dest / "registry")
    return dest
