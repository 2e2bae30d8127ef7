"""Schemathesis against the service's own OpenAPI schema: every operation, every check.

The checks are all of schemathesis's (conformance of status codes, content types, headers and
bodies; no 5xx; schema-violating requests refused and schema-valid ones accepted; undeclared
methods, missing and ignored auth; ...) but `max_response_time`, which needs a limit and is no
part of the schema (and a few find nothing to act on: no route deletes anything, there is one
identity). The examples, coverage and fuzzing phases run for each operation.

The schema is the one an app serving the trained registry answers at /openapi.json, so it
holds the typed operations of `default` (`/v1/models/default/predict`, `/v2/models/default/infer`
and their versions routes, see service/model_openapi.py) besides the generic `{model}` ones,
which now describe the models without a typed operation (any other name: 404). The v1 ones get
every check unrelaxed, and so do the typed infer ones. Some rules are out of JSON Schema's
reach and given in the operations' descriptions instead: v1 predict's `ids` has as many items
as `instances`, each printable (a Unicode category); a tensor request has each feature's tensor
once, every tensor the same rows, a shape that matches its data, and values that fit its
datatype. `map_case` makes the positive cases keep those rules, as the descriptions ask
callers to, and keeps the same rule for the ids of `/v1/feedback` items. (Feedback labels are
checked against the classes of the version that made the prediction; generated ids name no
logged prediction, so they are answered as `unknown_ids`, never a 422.)

Each operation gets its own app from `create_app`, over a copy of the trained registry
(`default` v1 active after v2 was, so there is something to roll back) and a SQLite database
holding one job and one drift report, with an admin token so the admin routes run too.
Requests go through the ASGI app in-process (the prediction fast path included). The seed is
fixed, so a run is reproducible; a failure names the operation, the check and a curl line to
replay it.
"""

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode, HookContext
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from service_helpers import (
    ADMIN_TOKEN,
    FEATURES,
    MODEL,
    NUMERIC,
    TestClient,
    copy_home,
    row,
    train_template,
)
from starlette.types import Receive, Scope, Send

from modelloop.service.app import create_app
from modelloop.service.errors import Unprocessable
from modelloop.service.ids import check_prediction_id
from modelloop.service.oip import NUMPY_OF
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
    }
)


def service_settings(home: Path, database_url: str | None = None) -> ServiceSettings:
    return ServiceSettings(
        home=home,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        poll_interval=0.2,
        grpc_port=0,
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


def _served_schema() -> tuple[Path, dict[str, Any]]:
    """A trained registry and the schema an app serving it answers at /openapi.json (with an
    operation per served model). Collection needs the schema, before any fixture runs, so the
    registry is trained here; `template_home` below hands the same one to the tests."""
    root = Path(tempfile.mkdtemp(prefix="modelloop-schemathesis-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    template = train_template(root / "template")
    home = copy_home(template, root / "served")
    with TestClient(create_app(service_settings(home))) as client:
        response = client.get("/openapi.json")
    response.raise_for_status()
    return template, response.json()


TEMPLATE, OPENAPI = _served_schema()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
schema.app = APP


@schema.hook
def map_case(context: HookContext, case: Case) -> Case:
    """Positive predict cases with the ids rule JSON Schema cannot state: as many ids as
    instances (the longer list is cut to the shorter) and each one valid for
    `check_prediction_id` (printable is a Unicode category; an invalid one is replaced). The
    schema's descriptions say both; negative cases are left as generated."""
    body = case.body
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if case.path == "/v1/feedback" and isinstance(body, dict):
        return _feedback_case(case, body)
    if case.path.startswith(f"/v2/models/{MODEL}/") and isinstance(body, dict):
        return _infer_case(case, body)
    if (
        not case.path.endswith("/predict")
        or not isinstance(body, dict)
        or not isinstance(body.get("ids"), list)
        or not isinstance(body.get("instances"), list)
    ):
        return case
    rows = min(len(body["ids"]), len(body["instances"]))
    ids: list[str] = []
    for i, pid in enumerate(body["ids"][:rows]):
        try:
            ids.append(check_prediction_id(pid, "ids"))
        except Unprocessable:
            ids.append(f"replaced-{i}")
    case.body = {**body, "ids": ids, "instances": body["instances"][:rows]}
    return case


@pytest.fixture(scope="session")
def template_home() -> Path:
    """The registry the schema was read from (see `_served_schema`)."""
    return TEMPLATE


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


def _infer_case(case: Case, body: dict[str, Any]) -> Case:
    """Positive typed infer cases with the rules of a tensor request JSON Schema cannot state,
    as the operation's description gives them: each feature's tensor once (a repeated one
    dropped, a missing one added), every tensor the same rows, its shape [rows] or [rows, 1]
    with as many values, and the request id valid for the id rule."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        return case
    if not all(isinstance(t.get("data"), list) for t in inputs):
        return case
    by_name: dict[str, dict[str, Any]] = {}
    for t in inputs:
        by_name.setdefault(str(t.get("name")), t)
    rows = min((len(t["data"]) for t in by_name.values()), default=1)
    tensors = []
    for name in FEATURES:
        t = by_name.get(name)
        if t is None:
            value = row(0)[name]
            t = {
                "name": name,
                "datatype": "FP32" if name in NUMERIC else "BYTES",
                "shape": [rows],
                "data": [value] * rows,
            }
        shape = t.get("shape")
        two_d = isinstance(shape, list) and len(shape) == 2
        data = [_fitting(v, t.get("datatype")) for v in t["data"][:rows]]
        tensors.append({**t, "data": data, "shape": [rows, 1] if two_d else [rows]})
    case.body = {**body, "inputs": tensors}
    if "id" in body:
        try:
            check_prediction_id(body["id"], "id", suffix=len(str(max(rows - 1, 0))) + 1)
        except Unprocessable:
            case.body["id"] = "replaced"
    return case


def _fitting(value: Any, datatype: Any) -> Any:
    """`value`, or 1 if it does not fit the numeric `datatype` (the description's rule)."""
    if datatype not in NUMPY_OF or datatype == "BYTES" or isinstance(value, str):
        return value
    try:
        with np.errstate(over="raise"):
            np.array([value], dtype=NUMPY_OF[datatype])
    except (OverflowError, ValueError, FloatingPointError):
        return 1
    return value


def _feedback_case(case: Case, body: dict[str, Any]) -> Case:
    """Positive feedback cases with the same ids rule (generated `~` ids allowed there)."""
    items = body.get("items")
    if not isinstance(items, list):
        return case
    kept = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            try:
                check_prediction_id(item.get("id"), "id", generated=True)
            except Unprocessable:
                item = {**item, "id": f"replaced-{i}"}
        kept.append(item)
    case.body = {**body, "items": kept}
    return case


@pytest.mark.slow
@schema.parametrize()
# One app per operation, shared by that operation's generated cases on purpose.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_openapi_schema_holds(case: Case, app: FastAPI) -> None:
    assert APP.app is app
    case.call_and_validate()
