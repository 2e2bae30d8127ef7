"""Fixtures for the service tests: a registry trained once per session, copied per test."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TestClient, copy_home, train_template

from modelloop.service.app import create_app
from modelloop.service.settings import ServiceSettings


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose registry holds `default` v1 (logreg, active) and v2 (random
    forest, published but not active). Trained once; tests work on copies."""
    return train_template(tmp_path_factory.mktemp("template-home"))


@pytest.fixture
def home(template_home: Path, tmp_path: Path) -> Path:
    """This test's own data directory: a copy of the trained registry, no database yet."""
    return copy_home(template_home, tmp_path / "home")


@pytest.fixture
def new_client(home: Path) -> Callable[..., TestClient]:
    """An in-process app on `home` (settings overridable); enter it to run its lifespan."""

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "home": home,
            "database_url": None,
            "admin_token": None,
            "poll_interval": 0.2,
            "grpc_port": 0,  # off in process: tests that need it start it on a free port
        }
        values.update(overrides)
        return TestClient(create_app(ServiceSettings(**values)))

    return make


@pytest.fixture
def make_client(new_client: Callable[..., TestClient]) -> Iterator[Callable[..., TestClient]]:
    """Like `new_client`, but started at once and stopped at the end of the test."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            return stack.enter_context(new_client(**overrides))

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
