"""Schemathesis against the service's own OpenAPI schema: every operation, every check.

The checks are all of schemathesis's (conformance of status codes, content types, headers and
bodies; no 5xx; schema-violating requests refused and schema-valid ones accepted; undeclared
methods, missing and ignored auth; ...) but `max_response_time`, which needs a limit and is no
part of the schema (and a few find nothing to act on: no route deletes anything, there is one
identity). The examples, coverage and fuzzing phases run for each operation.

Each operation gets its own app from `create_app`, over a copy of the trained registry
(`default` v1 active after v2 was, so there is something to roll back) and a SQLite database
holding one job and one drift report, with an admin token so the admin routes run too.
Requests go through the ASGI app in-process (the prediction fast path included). The seed is
fixed, so a run is reproducible; a failure names the operation, the check and a curl line to
replay it.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from service_helpers import ADMIN_TOKEN, MODEL
from starlette.types import Receive, Scope, Send

from modelloop.service.app import create_app
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import Database
from modelloop.store.jobs import JobQueue
from modelloop.store.registry import FolderRegistry
from modelloop.store.reports import DriftReports, ReportPages

SEED = 20_240_611
# Fuzzing examples per operation, on top of the schema's examples and the coverage phase's
# cases (boundaries, missing and wrong-typed values, undeclared methods, missing auth).
MAX_EXAMPLES = 80

# Each check's default expected statuses (schemathesis 4), plus the ones noted.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        # No example database and no cache of earlier failures to replay: the same seed
        # gives the same cases on every machine and every run.
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "cache": {"enabled": False},
        "checks": {
            # A request over a documented limit (maxItems of `instances`, the body size) is
            # refused with 413 Content Too Large: a rejection like any other 4xx.
            "negative_data_rejection": {"expected-statuses": [*REJECTED, "413"]},
        },
        "operations": [
            {
                # The four prediction operations serve any model, so their request schema
                # cannot name a model's features: a body that fits the schema but not the
                # model (a feature missing or unknown, a string for a numeric feature, ids
                # not one per instance, a tensor shape other than [rows, 1]) is answered
                # with the documented 422, naming the problem. Likewise feedback: a label
                # is checked against the classes (or task) of the version that made the
                # prediction it labels, and ids (there as in predict) follow the id rule the
                # schema gives in words (printable, no comma). Every other status still
                # fails this check.
                "include-path-regex": "/(predict|infer|feedback)$",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
        ],
    }
)


def service_settings(home: Path, database_url: str | None = None) -> ServiceSettings:
    return ServiceSettings(
        home=home, database_url=database_url, admin_token=ADMIN_TOKEN, poll_interval=0.2
    )


class AppUnderTest:
    """The ASGI app the schema sends to: each operation's own, set by the `app` fixture
    (schemathesis needs an app when it collects the tests, before any fixture runs)."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "the app fixture sets the app under test"
        await self.app(scope, receive, send)


APP = AppUnderTest()
# The schema as the app serves it at /openapi.json (it does not depend on the registry, so an
# app that is never started, on an in-memory database, is enough to read it).
OPENAPI = create_app(service_settings(Path("unused"), "sqlite://")).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
schema.app = APP


def seed(config: ServiceSettings) -> None:
    """A job, a drift report and promotions to roll back, so that those routes answer 200."""
    registry = FolderRegistry(config.registry_location)
    for version in (2, 1):  # active stays 1; two rollbacks succeed, then there are none left
        registry.promote(MODEL, version, "test", "seeded for the schema test")
    db = Database(config.database)
    try:
        db.migrate()
        JobQueue(db).enqueue(MODEL, "admin", "seeded for the schema test")
        DriftReports(db).add(MODEL, 1, 0.0, 60.0, 500, "ok", "no drift", {"features": {}})
        ReportPages(db).put(MODEL, "<html><body>report</body></html>")
    finally:
        db.dispose()


@pytest.fixture
def app(home: Path) -> Iterator[FastAPI]:
    config = service_settings(home)
    seed(config)
    APP.app = create_app(config)
    try:
        yield APP.app
    finally:
        # The ASGI transport starts the app's lifespan on the first request and keeps it
        # running; stop it here (draining the log writer, closing the database).
        asgi.shutdown_lifespans()
        APP.app = None


@pytest.mark.slow
@schema.parametrize()
# One app per operation, shared by that operation's generated cases on purpose.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_openapi_schema_holds(case: Case, app: FastAPI) -> None:
    assert APP.app is app
    case.call_and_validate()
