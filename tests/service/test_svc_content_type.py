"""Content types: every body must say it is JSON (or binary tensors), so that a browser cannot
post one cross-site as a "simple" request (text/plain, a form) that needs no CORS preflight.
Stock tritonclient sends infer bodies with no content type at all, and keeps working."""

from collections.abc import Callable, Iterator

import orjson
import pytest
from service_helpers import ADMIN_TOKEN, MODEL, TestClient, assert_error, oip_inputs, row

PREDICT = f"/v1/models/{MODEL}/predict"
INFER = f"/v2/models/{MODEL}/infer"
PREDICT_BODY = orjson.dumps({"instances": [row(0)]})
INFER_BODY = orjson.dumps({"inputs": oip_inputs([row(0)])})
BROWSER = [{"origin": "https://evil.example"}, {"sec-fetch-mode": "no-cors"}]


def _chunks(data: bytes) -> Iterator[bytes]:
    yield data[:10]
    yield data[10:]


@pytest.mark.parametrize("path", [PREDICT, f"/v1/models/{MODEL}/versions/1/predict"])
def test_predict_body_without_a_content_type_is_415(client: TestClient, path: str) -> None:
    assert_error(client.post(path, content=PREDICT_BODY), 415, "content type")
    assert_error(client.post(path, content=_chunks(PREDICT_BODY)), 415, "content type")


@pytest.mark.parametrize("ctype", ["application/json", "application/vnd.api+json; charset=utf-8"])
def test_json_types_are_accepted(client: TestClient, ctype: str) -> None:
    headers = {"content-type": ctype, **BROWSER[0]}
    assert client.post(PREDICT, content=PREDICT_BODY, headers=headers).status_code == 200
    assert client.post(INFER, content=INFER_BODY, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"]
)
def test_infer_body_of_a_simple_type_is_415_naming_it(client: TestClient, ctype: str) -> None:
    r = client.post(INFER, content=INFER_BODY, headers={"content-type": ctype})
    assert_error(r, 415, repr(ctype.split(";")[0]))


def test_infer_without_a_content_type_is_accepted_from_clients_that_are_not_browsers(
    client: TestClient,
) -> None:
    """What tritonclient sends: no Content-Type, and no Origin or Sec-Fetch-Mode."""
    assert client.post(INFER, content=INFER_BODY).status_code == 200
    assert client.post(INFER, content=_chunks(INFER_BODY)).status_code == 200
    for headers in BROWSER:
        assert_error(client.post(INFER, content=INFER_BODY, headers=headers), 415)


def test_binary_tensors_need_their_header_length(client: TestClient) -> None:
    octet = {"content-type": "application/octet-stream"}
    assert_error(client.post(INFER, content=INFER_BODY, headers=octet), 415, "octet-stream")
    with_length = {**octet, "inference-header-content-length": str(len(INFER_BODY))}
    assert client.post(INFER, content=INFER_BODY, headers=with_length).status_code == 200


@pytest.mark.parametrize("ctype", [None, "text/plain"])
def test_feedback_body_not_declared_json_is_415(client: TestClient, ctype: str | None) -> None:
    body = orjson.dumps({"items": [{"id": "x", "label": "yes"}]})
    headers = {} if ctype is None else {"content-type": ctype}
    assert_error(client.post("/v1/feedback", content=body, headers=headers), 415)
    assert client.post("/v1/feedback", content=body, headers=_json()).status_code == 200


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


def test_admin_bodies_need_json_but_an_empty_post_needs_no_type(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    promote = f"/v1/admin/models/{MODEL}/promote"
    body = orjson.dumps({"version": 2})
    assert_error(client.post(promote, content=body, headers=auth), 415)
    r = client.post(promote, content=body, headers={**auth, "content-type": "text/plain"})
    assert_error(r, 415, "text/plain")
    r = client.post(promote, content=body, headers={**auth, **_json()})
    assert r.status_code == 200, r.text
    # `curl -X POST .../rollback`: no body, no content type (nothing to smuggle).
    r = client.post(f"/v1/admin/models/{MODEL}/rollback", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["to_version"] == 1
