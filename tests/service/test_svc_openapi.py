"""The OpenAPI schema types each served model's predict operations from its metadata."""

import time
from pathlib import Path
from typing import Any

from service_helpers import CATEGORICAL, FEATURES, MODEL, NUMERIC, PLANS, REGIONS, TestClient

from modelloop.store.registry import FolderRegistry

TYPED = f"/v1/models/{MODEL}/predict"
TYPED_VERSION = f"/v1/models/{MODEL}/versions/{{version}}/predict"
INFER = f"/v2/models/{MODEL}/infer"
INFER_VERSION = f"/v2/models/{MODEL}/versions/{{version}}/infer"
GENERIC = [
    "/v1/models/{model}/predict",
    "/v1/models/{model}/versions/{version}/predict",
    "/v2/models/{model}/infer",
    "/v2/models/{model}/versions/{version}/infer",
]


def _body(operation: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _instance(operation: dict[str, Any]) -> dict[str, Any]:
    items: dict[str, Any] = _body(operation)["properties"]["instances"]["items"]
    return items


def _prediction(operation: dict[str, Any]) -> dict[str, Any]:
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    items: dict[str, Any] = ok["properties"]["predictions"]["items"]
    return items


def test_a_served_model_has_typed_predict_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    typed = paths[TYPED]["post"]
    instance = _instance(typed)
    assert instance["required"] == FEATURES
    assert instance["additionalProperties"] is False
    for name in NUMERIC:
        assert instance["properties"][name]["type"] == ["number", "null"]
    for name in CATEGORICAL:
        branches = instance["properties"][name]["anyOf"]
        assert {"type": "string"}.items() <= branches[1].items()
        assert {"type": "null"}.items() <= branches[-1].items()
    assert instance["properties"]["region"]["anyOf"][0]["enum"] == REGIONS
    assert instance["properties"]["plan"]["anyOf"][0]["enum"] == PLANS
    prediction = _prediction(typed)
    assert prediction["properties"]["label"]["enum"] == ["no", "yes"]
    assert prediction["properties"]["probabilities"]["required"] == ["no", "yes"]
    assert [p["name"] for p in typed.get("parameters", [])] == []
    # Both trained versions take the same features: the version route lists them.
    (version,) = paths[TYPED_VERSION]["post"]["parameters"]
    assert version["schema"]["enum"] == [1, 2]
    # The generic operations describe the other models only (a literal path wins in OpenAPI).
    for generic in GENERIC:
        (model, *_) = paths[generic]["post"]["parameters"]
        assert model["schema"]["not"] == {"enum": [MODEL]}


def test_a_served_model_has_typed_infer_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    inputs = _body(paths[INFER]["post"])["properties"]["inputs"]
    assert inputs["minItems"] == inputs["maxItems"] == len(FEATURES)
    tensors = {t["properties"]["name"]["const"]: t for t in inputs["items"]["oneOf"]}
    assert list(tensors) == FEATURES
    assert tensors["region"]["properties"]["datatype"] == {"const": "BYTES"}
    assert "FP32" in tensors["age"]["properties"]["datatype"]["enum"]
    (version,) = paths[INFER_VERSION]["post"]["parameters"]
    assert version["schema"]["enum"] == ["1", "2"]


def test_the_typed_examples_are_answered(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (TYPED, INFER):
        example = paths[path]["post"]["requestBody"]["content"]["application/json"]["example"]
        r = client.post(path, json=example)
        assert r.status_code == 200, r.text


def test_the_schema_is_cached_while_nothing_changes(client: TestClient) -> None:
    app = client.app
    assert app.openapi() is app.openapi()  # type: ignore[attr-defined]


def test_docs_load_the_schema(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        assert "/openapi.json" in r.text
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_the_schema_follows_a_promoted_version_with_other_features(
    client: TestClient, home: Path
) -> None:
    from modelloop.training.pipeline import TrainRequest, run_training

    result = run_training(
        TrainRequest(model=MODEL, dataset="iris", estimator="logreg", promote="always"),
        FolderRegistry(home / "registry"),
    )
    meta = result.metadata
    assert meta.version == 3
    deadline = time.monotonic() + 10
    while True:
        paths = client.get("/openapi.json").json()["paths"]
        if _instance(paths[TYPED]["post"])["required"] == meta.feature_names:
            break
        assert time.monotonic() < deadline, "the schema still shows the old features"
        time.sleep(0.1)
    assert not set(meta.feature_names) & set(FEATURES)
    labels = _prediction(paths[TYPED]["post"])["properties"]["label"]["enum"]
    assert labels == meta.classes
    inputs = _body(paths[INFER]["post"])["properties"]["inputs"]["items"]["oneOf"]
    assert [t["properties"]["name"]["const"] for t in inputs] == meta.feature_names
    # Versions 1 and 2 take other features: the typed version route is for version 3 only.
    (version,) = paths[TYPED_VERSION]["post"]["parameters"]
    assert version["schema"]["enum"] == [3]
