"""Feedback integrity in process, on SQLite and PostgreSQL: the optional bearer token, labels
checked against the version that made each prediction, one label per prediction id (the
latest), the id rule and the label length limit."""

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError
from service_helpers import ADMIN_TOKEN, MODEL, TestClient, assert_error, copy_home, row
from sqlalchemy import func, select

from modelloop.service.app import create_app
from modelloop.service.feedback import LabelRules
from modelloop.service.models import ModelManager
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import open_database
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.metadata import ModelMetadata
from modelloop.store.registry import FolderRegistry
from modelloop.store.schema import feedback

TOKEN = "feedback-token-0123456789"
FEEDBACK = "/v1/feedback"
INTS = "ints"  # classes 0..3 (v1, active) and 0..1 (v2, not active)
SUGAR = "sugar"  # a regression


def _int_csv(path: Path, classes: int) -> Path:
    rng = random.Random(classes)
    lines = ["x1,x2,y"]
    for _ in range(400):
        a, b = rng.random(), rng.random()
        y = int(a + b > 1) + (2 if classes > 2 and a > 0.8 else 0)
        lines.append(f"{a:.3f},{b:.3f},{y}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def feedback_template(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service tests' registry plus `ints` (integer classes; v2 with fewer of them) and
    `sugar` (a regression on the diabetes data)."""
    from modelloop.training.pipeline import TrainRequest, run_training

    home = copy_home(template_home, tmp_path_factory.mktemp("feedback-home"))
    registry = FolderRegistry(home / "registry")
    for classes, promote in ((4, "always"), (2, "never")):
        data = _int_csv(home / f"ints-{classes}.csv", classes)
        result = run_training(
            TrainRequest(model=INTS, data=data, target="y", estimator="logreg", promote=promote),
            registry,
        )
        assert result.metadata.classes == list(range(classes))
    run_training(
        TrainRequest(model=SUGAR, dataset="diabetes", estimator="linear", promote="always"),
        registry,
    )
    return home


@pytest.fixture
def fb_client(
    feedback_template: Path, tmp_path: Path, db_url: str
) -> Iterator[Callable[..., TestClient]]:
    """A started in-process service on a copy of `feedback_template`, on `db_url`."""
    home = copy_home(feedback_template, tmp_path / "home")
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "home": home,
            "database_url": db_url,
            "admin_token": None,
            "feedback_token": None,
            "poll_interval": 0.2,
        }
        values.update(overrides)
        client = TestClient(create_app(ServiceSettings(**values)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def predict(client: TestClient, model: str, ids: list[str], version: int | None = None) -> None:
    described = client.get(f"/v1/models/{model}").json()
    if model == MODEL:
        rows = [row(i) for i in range(len(ids))]
    else:
        rows = [{f["name"]: 0.1 * i for f in described["features"]} for i in range(len(ids))]
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + "/predict"
    r = client.post(path, json={"instances": rows, "ids": ids})
    assert r.status_code == 200, r.text


def stored(db_url: str) -> dict[str, Any]:
    """Every stored label by prediction id, and the feedback table's row count checked."""
    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(select(feedback.c.prediction_id, feedback.c.label)).all()
            count = conn.execute(select(func.count()).select_from(feedback)).scalar_one()
        log = PredictionLog(db)
        joined = {r["id"]: r["label"] for m in (MODEL, INTS, SUGAR) for r in log.labelled(m)}
    finally:
        db.dispose()
    labels = dict(rows)
    assert count == len(labels)  # one row per prediction id
    assert joined == labels
    return labels


def post(client: TestClient, items: list[dict[str, Any]], **kw: Any) -> Any:
    return client.post(FEEDBACK, json={"items": items}, **kw)


# -- the token -------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_token_configured_means_feedback_open(fb_client: Callable[..., TestClient]) -> None:
    client = fb_client()
    r = post(client, [{"id": "nobody", "label": "yes"}])
    assert r.status_code == 200, r.text
    operation = client.get("/openapi.json").json()["paths"][FEEDBACK]["post"]
    assert "401" not in operation["responses"]
    assert "security" not in operation


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token-0123456789"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer "},
        {"authorization": TOKEN},
        {"authorization": f"Bearer {ADMIN_TOKEN}"},
    ],
    ids=["missing", "wrong", "longer", "basic", "empty", "no scheme", "admin token"],
)
def test_missing_or_wrong_feedback_token_is_401(
    fb_client: Callable[..., TestClient], db_url: str, headers: dict[str, str]
) -> None:
    client = fb_client(feedback_token=TOKEN, admin_token=ADMIN_TOKEN)
    predict(client, MODEL, ["p-0"])
    r = post(client, [{"id": "p-0", "label": "yes"}], headers=headers)
    assert_error(r, 401, "feedback")
    assert r.headers["www-authenticate"] == "Bearer"
    assert stored(db_url) == {}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_feedback_token_opens_feedback_only(
    fb_client: Callable[..., TestClient], db_url: str
) -> None:
    # configured as a Secret file gives it: with a trailing newline (and stray spaces)
    client = fb_client(feedback_token=f"  {TOKEN}\n", admin_token=ADMIN_TOKEN)
    predict(client, MODEL, ["p-0"])
    auth = {"authorization": f"Bearer {TOKEN}"}
    r = post(client, [{"id": "p-0", "label": "yes"}], headers=auth)
    assert r.json() == {"received": 1, "matched": 1, "unknown_ids": []}
    assert stored(db_url) == {"p-0": "yes"}
    # not an admin token, and the admin token is not a feedback token
    assert_error(client.get("/v1/admin/jobs", headers=auth), 401, "admin")
    assert client.get(
        "/v1/admin/jobs", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    ).is_success
    operation = client.get("/openapi.json").json()["paths"][FEEDBACK]["post"]
    assert "401" in operation["responses"]
    assert operation["security"] == [{"feedbackToken": []}]


def test_feedback_token_is_stripped_and_at_least_16_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELLOOP_FEEDBACK_TOKEN", f"{TOKEN}\n")
    token = ServiceSettings().feedback_token
    assert token is not None
    assert token.get_secret_value() == TOKEN
    for short in ("short-token\n", "  0123456789abcde  ", "", "   \n"):
        monkeypatch.setenv("MODELLOOP_FEEDBACK_TOKEN", short)
        with pytest.raises(ValidationError, match="at least 16 characters") as caught:
            ServiceSettings()
        if short.strip():
            assert short.strip() not in str(caught.value)  # a settings error shows no secret
    monkeypatch.delenv("MODELLOOP_FEEDBACK_TOKEN")
    assert ServiceSettings().feedback_token is None
    assert ServiceSettings(admin_token="off").admin_token is None  # unchanged


# -- labels against the version that made the prediction --------------------------------------


def test_labels_are_checked_against_the_classes_and_task(
    fb_client: Callable[..., TestClient], db_url: str
) -> None:
    client = fb_client()
    predict(client, MODEL, ["d-0", "d-1"])
    predict(client, INTS, ["i-0", "i-1", "i-2"])
    predict(client, SUGAR, ["s-0", "s-1"])
    good = [
        {"id": "d-0", "label": "yes"},
        {"id": "i-0", "label": 3},
        {"id": "i-1", "label": 1.0},  # a whole number is the integer class
        {"id": "s-0", "label": 151},
        {"id": "nobody", "label": "anything"},  # unknown ids are no error
    ]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"id": "d-1", "label": "maybe"}, "not one of the classes of model 'default' version 1"),
        ({"id": "d-1", "label": 1}, "not one of the classes"),
        ({"id": "i-2", "label": "1"}, "not one of the classes of model 'ints' version 1"),
        ({"id": "i-2", "label": 4}, "0, 1, 2, 3"),
        ({"id": "i-2", "label": 1.5}, "not one of the classes"),
        ({"id": "s-1", "label": "3.5"}, "must be a number"),
        ({"id": "s-1", "label": 10**400}, "finite"),
    ]
    for item, why in bad:
        r = post(client, [*good, item])
        assert_error(r, 422, f"item {len(good)} (id {item['id']!r})", why)
    assert stored(db_url) == {}  # nothing of a refused request
    json = {"content-type": "application/json"}
    for body in (b"NaN", b"1e999", b"-Infinity"):  # Python's JSON parser takes them
        item = b'{"items": [{"id": "s-1", "label": %s}]}' % body
        r = client.post(FEEDBACK, content=item, headers=json)
        assert_error(r, 422, "item 0 (id 's-1')", "finite number", "regression")
    for body in (b"true", b"null", b"[1]"):
        item = b'{"items": [{"id": "i-2", "label": %s}]}' % body
        assert_error(client.post(FEEDBACK, content=item, headers=json), 422, "label")
    assert stored(db_url) == {}
    r = post(client, good)
    assert r.json() == {"received": 5, "matched": 4, "unknown_ids": ["nobody"]}, r.text
    labels = stored(db_url)
    assert labels == {"d-0": "yes", "i-0": 3, "i-1": 1, "s-0": 151.0}
    assert type(labels["i-1"]) is int


def test_labels_are_checked_against_the_version_that_predicted(
    fb_client: Callable[..., TestClient], db_url: str
) -> None:
    """`ints` v1 (active) has classes 0..3, v2 only 0 and 1: class 3 labels v1's predictions,
    not v2's."""
    client = fb_client()
    predict(client, INTS, ["by-v1"])
    predict(client, INTS, ["by-v2"], version=2)
    assert post(client, [{"id": "by-v1", "label": 3}]).status_code == 200
    assert_error(
        post(client, [{"id": "by-v2", "label": 3}]),
        422,
        "item 0 (id 'by-v2')",
        "model 'ints' version 2: 0, 1",
    )
    assert post(client, [{"id": "by-v2", "label": 1}]).status_code == 200
    assert stored(db_url) == {"by-v1": 3, "by-v2": 1}


# -- one label per prediction id -------------------------------------------------------------


def test_one_label_per_prediction_id_the_latest_wins(
    fb_client: Callable[..., TestClient], db_url: str
) -> None:
    client = fb_client()
    predict(client, MODEL, ["p-0", "p-1"])
    items = [{"id": "p-0", "label": ("yes", "no")[i % 2]} for i in range(9_998)]
    items += [{"id": "p-1", "label": "yes"}, {"id": "p-1", "label": "no"}]
    r = post(client, items)
    assert r.json() == {"received": 10_000, "matched": 10_000, "unknown_ids": []}, r.text
    assert stored(db_url) == {"p-0": "no", "p-1": "no"}  # the last item for each id
    assert post(client, [{"id": "p-0", "label": "yes"}]).status_code == 200
    assert stored(db_url) == {"p-0": "yes", "p-1": "no"}  # a later request corrects it


# -- ids and label length --------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_feedback_ids_follow_the_id_rule(fb_client: Callable[..., TestClient], db_url: str) -> None:
    client = fb_client()
    for bad in ("a,b", "tab\there", "nul\x00", "x" * 129, ""):
        r = post(client, [{"id": "ok", "label": "yes"}, {"id": bad, "label": "yes"}])
        assert_error(r, 422, "1")
    # generated ids start with '~': feedback names them
    r = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [row(0)]})
    generated = r.json()["predictions"][0]["id"]
    assert generated.startswith("~")
    r = post(client, [{"id": generated, "label": "no"}, {"id": "~never:0", "label": "no"}])
    assert r.json() == {"received": 2, "matched": 1, "unknown_ids": ["~never:0"]}
    assert stored(db_url) == {generated: "no"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_label_strings_are_at_most_1000_characters(
    fb_client: Callable[..., TestClient], db_url: str
) -> None:
    client = fb_client()
    predict(client, MODEL, ["p-0"])
    r = post(client, [{"id": "p-0", "label": "yes"}, {"id": "ghost", "label": "x" * 1001}])
    assert_error(r, 422, "item 1 (id 'ghost')", "at most 1000 characters")
    assert stored(db_url) == {}
    r = post(client, [{"id": "p-0", "label": "yes"}, {"id": "ghost", "label": "x" * 1000}])
    assert r.json() == {"received": 2, "matched": 1, "unknown_ids": ["ghost"]}
    schema = client.get("/openapi.json").json()["components"]["schemas"]["FeedbackItem"]
    assert schema["properties"]["label"]["maxLength"] == 1000


def test_a_label_of_a_version_the_registry_lacks_is_422(
    fb_client: Callable[..., TestClient], db_url: str
) -> None:
    client = fb_client()
    db = open_database(db_url)
    try:
        ghost = LogRow(
            # logged now: a row from 1970 is the service's own retention pass's to delete
            id="g-0",
            ts=time.time(),
            model="gone",
            version=9,
            features={},
            output={},
            latency_ms=1.0,
        )
        assert PredictionLog(db).write([ghost]) == 1
    finally:
        db.dispose()
    r = post(client, [{"id": "g-0", "label": "yes"}])
    assert_error(r, 422, "item 0 (id 'g-0')", "cannot be checked", "'gone' version 9")
    assert stored(db_url) == {}


def test_label_rules_read_each_version_once(feedback_template: Path) -> None:
    """A version never changes: its metadata is read from the registry once, and not at all
    while it is loaded."""
    registry = FolderRegistry(feedback_template / "registry")
    reads: list[tuple[str, int]] = []

    class Counting(FolderRegistry):
        def metadata(self, model: str, version: int) -> ModelMetadata:
            reads.append((model, version))
            return registry.metadata(model, version)

    class NothingLoaded:
        def loaded(self, model: str, version: int) -> None:
            return None

    rules = LabelRules(
        Counting(feedback_template / "registry"), cast(ModelManager, NothingLoaded())
    )
    for _ in range(3):
        assert rules.check(0, "a", 2.0, INTS, 1) == 2
        assert rules.check(1, "b", 1, INTS, 2) == 1
        assert rules.check(2, "c", 7, SUGAR, 1) == 7.0
    assert reads == [(INTS, 1), (INTS, 2), (SUGAR, 1)]
