"""The admin API in process: token checks, retrain jobs, promote, rollback, audit events."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from service_helpers import (
    ADMIN_TOKEN,
    BREAKERS,
    MODEL,
    TestClient,
    assert_error,
    row,
    sample_sum,
)

from modelloop.service.settings import ServiceSettings
from modelloop.store.database import open_database
from modelloop.store.events import Events
from modelloop.store.registry import FolderRegistry, Registry

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PREDICT = f"/v1/models/{MODEL}/predict"


def events(home: Path) -> list[dict[str, Any]]:
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        return list(reversed(Events(db).list(model=MODEL)))
    finally:
        db.dispose()


def serving(client: TestClient) -> int:
    r = client.post(PREDICT, json={"instances": [row(0)]})
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


@pytest.fixture
def admin(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(admin_token=ADMIN_TOKEN)


ADMIN_CALLS = [
    ("post", f"/v1/admin/models/{MODEL}/retrain", None),
    ("get", "/v1/admin/jobs", None),
    ("get", "/v1/admin/jobs/1", None),
    ("post", f"/v1/admin/models/{MODEL}/promote", {"version": 2}),
    ("post", f"/v1/admin/models/{MODEL}/rollback", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_no_token_configured_means_admin_disabled(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    r = client.request(method, path, json=body, headers=AUTH)
    assert_error(r, 403, "admin API disabled")
    assert serving(client) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"authorization": f"Basic {ADMIN_TOKEN}"},
        {"authorization": "Bearer "},
        {"authorization": ADMIN_TOKEN},
    ],
    ids=["missing", "wrong", "longer", "basic", "empty", "no scheme"],
)
def test_missing_or_wrong_token_is_401(
    admin: TestClient, home: Path, headers: dict[str, str]
) -> None:
    for method, path, body in ADMIN_CALLS:
        assert_error(admin.request(method, path, json=body, headers=headers), 401)
    assert serving(admin) == 1
    assert FolderRegistry(home / "registry").active(MODEL) == 1
    assert admin.get("/v1/admin/jobs", headers=AUTH).json() == {"jobs": []}
    assert events(home) == []


def test_configured_token_is_stripped_like_the_presented_one(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kubernetes Secret made from a file keeps the file's trailing newline."""
    monkeypatch.setenv("MODELLOOP_ADMIN_TOKEN", f"{ADMIN_TOKEN}\n")
    assert ServiceSettings().admin_token == SecretStr(ADMIN_TOKEN)
    admin = make_client(admin_token=f" {ADMIN_TOKEN}\r\n")
    r = admin.get("/v1/admin/jobs", headers=AUTH)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", ["off", "OFF", "", "  \n"])
def test_off_or_empty_token_means_admin_off(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELLOOP_ADMIN_TOKEN", value)
    assert ServiceSettings().admin_token is None


@pytest.mark.parametrize("value", ["short-secret", "fifteen-chars-x", " fifteen-chars-x\n"])
def test_short_token_is_a_settings_error_that_does_not_echo_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELLOOP_ADMIN_TOKEN", value)
    with pytest.raises(ValidationError) as raised:
        ServiceSettings()
    message = str(raised.value)
    assert "MODELLOOP_ADMIN_TOKEN" in message
    assert "at least 16 characters" in message
    assert value.strip() not in message
    assert ServiceSettings(admin_token="sixteen-chars-xx").admin_token is not None


def test_serve_with_a_short_token_exits_with_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelloop.cli import main

    monkeypatch.setenv("MODELLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("MODELLOOP_ADMIN_TOKEN", "hunter2-secret")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("modelloop: error: MODELLOOP_ADMIN_TOKEN must be at least 16")
    assert "hunter2" not in err


def test_retrain_queues_one_job_and_records_events(admin: TestClient, home: Path) -> None:
    r = admin.post(f"/v1/admin/models/{MODEL}/retrain", headers=AUTH, json={"reason": "test"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert isinstance(job["id"], int)
    assert job["model"] == MODEL
    assert job["status"] == "queued"
    again = admin.post(f"/v1/admin/models/{MODEL}/retrain", headers=AUTH)
    assert again.status_code == 202, again.text
    assert again.json()["id"] == job["id"]

    jobs = admin.get("/v1/admin/jobs", headers=AUTH)
    assert jobs.status_code == 200, jobs.text
    assert [j["id"] for j in jobs.json()["jobs"]] == [job["id"]]
    one = admin.get(f"/v1/admin/jobs/{job['id']}", headers=AUTH)
    assert one.status_code == 200
    assert one.json()["id"] == job["id"]
    assert one.json()["reason"] == "test"
    assert_error(admin.get("/v1/admin/jobs/987654", headers=AUTH), 404, "987654")
    assert_error(admin.get("/v1/admin/jobs?limit=0", headers=AUTH), 422)

    recorded = [e for e in events(home) if e["kind"] == "retrain_requested"]
    assert len(recorded) == 2
    assert [e["details"]["job"] for e in recorded] == [job["id"], job["id"]]
    assert [e["details"]["new_job"] for e in recorded] == [True, False]
    assert all(e["actor"].startswith("admin") for e in recorded)


def test_retrain_unknown_model_is_404(admin: TestClient) -> None:
    assert_error(admin.post("/v1/admin/models/nope/retrain", headers=AUTH), 404, "nope")
    assert_error(admin.post("/v1/admin/models/..%2Fx/retrain", headers=AUTH), 404)
    assert_error(admin.post("/v1/admin/models/%2E%2E/retrain", headers=AUTH), 404)
    assert admin.get("/v1/admin/jobs", headers=AUTH).json() == {"jobs": []}


def test_promote_swaps_at_once_and_rollback_returns(admin: TestClient, home: Path) -> None:
    registry = FolderRegistry(home / "registry")
    assert serving(admin) == 1
    r = admin.post(
        f"/v1/admin/models/{MODEL}/promote", headers=AUTH, json={"version": 2, "reason": "t"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model": MODEL,
        "from_version": 1,
        "to_version": 2,
        "serving_version": 2,
    }
    assert serving(admin) == 2  # the very next request, no poll needed
    assert registry.active(MODEL) == 2
    assert admin.get(f"/v1/models/{MODEL}").json()["serving_version"] == 2

    rb = admin.post(f"/v1/admin/models/{MODEL}/rollback", headers=AUTH)
    assert rb.status_code == 200, rb.text
    assert rb.json()["from_version"] == 2
    assert rb.json()["to_version"] == 1
    assert rb.json()["serving_version"] == 1
    assert serving(admin) == 1
    assert registry.active(MODEL) == 1
    # Nothing earlier than version 1 to roll back to.
    assert_error(admin.post(f"/v1/admin/models/{MODEL}/rollback", headers=AUTH), 409)
    assert serving(admin) == 1

    kinds = [(e["kind"], e["details"].get("to_version")) for e in events(home)]
    assert kinds == [("promote", 2), ("rollback", 1)]
    assert [h.action for h in registry.history(MODEL)][-2:] == ["promote", "rollback"]
    metrics = admin.get("/metrics").text
    assert sample_sum(metrics, "modelloop_model_swaps_total", model=MODEL) == 2
    assert sample_sum(metrics, "modelloop_model_active_version", model=MODEL) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"version": 9}, 404),
        ({"version": "2"}, 422),
        ({"version": 0}, 422),
        ({}, 422),
        ({"version": 2, "other": 1}, 422),
    ],
)
def test_bad_promote_requests(admin: TestClient, body: Any, status: int) -> None:
    assert_error(admin.post(f"/v1/admin/models/{MODEL}/promote", headers=AUTH, json=body), status)
    assert serving(admin) == 1


@pytest.mark.parametrize("breaker", BREAKERS)
def test_promote_of_a_broken_version_is_refused_and_the_old_keeps_serving(
    admin: TestClient, home: Path, breaker: Callable[[Registry], int]
) -> None:
    registry = FolderRegistry(home / "registry")
    version = breaker(registry)
    before = sample_sum(admin.get("/metrics").text, "modelloop_model_load_failures_total")
    r = admin.post(f"/v1/admin/models/{MODEL}/promote", headers=AUTH, json={"version": version})
    assert 400 <= r.status_code < 500, r.text
    assert_error(r, r.status_code, str(version))
    assert serving(admin) == 1
    assert registry.active(MODEL) == 1
    after = sample_sum(admin.get("/metrics").text, "modelloop_model_load_failures_total")
    assert after == before + 1
    assert not [e for e in events(home) if e["kind"] == "promote"]
    # The version endpoint refuses it too, without a 500.
    v = admin.post(f"/v1/models/{MODEL}/versions/{version}/predict", json={"instances": [row(0)]})
    assert v.status_code in (404, 409, 422, 503), v.text
    assert_error(v, v.status_code)
