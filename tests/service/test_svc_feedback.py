"""Feedback integrity in process, on SQLite and PostgreSQL: the optional bearer token."""

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from service_helpers import ADMIN_TOKEN, MODEL, TestClient, assert_error, copy_home, row
from sqlalchemy import func, select

from modelloop.service.app import create_app
from modelloop.service.settings import ServiceSettings
from modelloop.store.database import open_database
from modelloop.store.predictions import PredictionLog
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
