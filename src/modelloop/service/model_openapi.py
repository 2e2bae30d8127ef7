"""Per-model prediction operations in the OpenAPI schema, typed from each served version's
metadata.

The generic `/v1/models/{model}/predict` route (and its versions route, and OIP's
`/v2/models/{model}[/versions/{version}]/infer`) serves every model, so its body cannot name a
model's features. For each model serving a version, the schema also lists the same paths with
the name written in (`/v1/models/<name>/predict`, ...) as operations of their own: v1 takes one
object per instance with exactly the features and answers the model's class labels or a value;
OIP takes one tensor per feature, named and typed. OpenAPI matches a literal path before a
template, so the generic operations' `model` parameter excludes the typed names: each request
is described by one operation. The FastAPI route behind both is the same one.

What the schema says is what `InputSchema.columns` accepts: a null numeric value is missing
(the exported graph imputes the training median, whether or not training saw missing values);
a null categorical value is the missing category; a category not seen in training is accepted
and one-hot encodes to no category at all (`handle_unknown="ignore"`); an integer for a
categorical feature is read as its decimal string. JSON Schema cannot say that `ids` has as many
items as `instances`, nor that OIP tensors' shapes agree: the descriptions say it (else 422).
"""

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from modelloop.service.inputs import FLOAT32_MAX, MAX_STRING
from modelloop.service.oip import NUMPY_OF
from modelloop.store.errors import StoreError
from modelloop.store.metadata import Feature, ModelMetadata
from modelloop.store.registry import Registry

PREDICT = "/v1/models/{model}/predict"
PREDICT_VERSION = "/v1/models/{model}/versions/{version}/predict"
INFER = "/v2/models/{model}/infer"
INFER_VERSION = "/v2/models/{model}/versions/{version}/infer"
# The largest integer JSON parsing takes: orjson reads one past 64 bits as a double, and from
# here on that rounds to infinity (a 400). Written out, as the parser sees the digits.
INTEGER_MAX = 2**1024 - 2**970 - 1


def feature_schema(feature: Feature) -> dict[str, Any]:
    if feature.kind == "numeric":
        return {
            "type": ["number", "null"],
            "minimum": -FLOAT32_MAX,
            "maximum": FLOAT32_MAX,
            "description": "numeric (float32 range); null for a missing value (imputed with "
            "the training median)",
        }
    seen = feature.categories
    described = ", ".join(seen) if seen else "none"
    branches: list[dict[str, Any]] = []
    if seen:
        branches.append({"enum": list(seen), "title": "a category seen in training"})
    branches += [
        {"type": "string", "maxLength": MAX_STRING, "title": "any other category"},
        {
            "type": "integer",
            "minimum": -INTEGER_MAX,
            "maximum": INTEGER_MAX,
            "title": "read as its decimal string",
        },
        {"type": "null", "title": "missing"},
    ]
    return {
        "anyOf": branches,
        "description": f"categorical; seen in training: {described}. Any other string is "
        "accepted as an unseen category (it encodes to none of them), an integer is read as "
        "its decimal string, null is the missing category",
    }


def _example(feature: Feature) -> Any:
    if feature.kind == "numeric":
        return 0
    return feature.categories[0] if feature.categories else "unknown"


def instance_schema(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"{meta.name} instance",
        "required": meta.feature_names,
        "additionalProperties": False,
        "properties": {f.name: feature_schema(f) for f in meta.features},
    }


def prediction_schema(meta: ModelMetadata) -> dict[str, Any]:
    id_schema = {"type": "string", "description": "the prediction id (yours, or generated)"}
    if meta.task == "regression":
        return {
            "type": "object",
            "required": ["id", "value"],
            "properties": {"id": id_schema, "value": {"type": "number"}},
        }
    keys = [str(c) for c in meta.classes]
    return {
        "type": "object",
        "required": ["id", "label", "probabilities"],
        "properties": {
            "id": id_schema,
            "label": {"enum": list(meta.classes), "description": "the predicted class"},
            "probabilities": {
                "type": "object",
                "description": "each class's probability (class label as text -> [0, 1])",
                "required": keys,
                "additionalProperties": False,
                "properties": {k: {"type": "number"} for k in keys},
            },
        },
    }


def _body(meta: ModelMetadata, generic: Mapping[str, Any]) -> dict[str, Any]:
    """The generic request body with the instances typed (limits and ids as documented)."""
    body = copy.deepcopy(dict(generic))
    media = body["content"]["application/json"]
    instances = media["schema"]["properties"]["instances"]
    instances["items"] = instance_schema(meta)
    instances["description"] = (
        f"one object per row, with exactly the features of {meta.name} v{meta.version}"
    )
    media["schema"]["properties"]["ids"]["description"] += "; as many as instances"
    media["example"] = {"instances": [{f.name: _example(f) for f in meta.features}]}
    return body


def _response(meta: ModelMetadata, versions: Sequence[int] | None) -> dict[str, Any]:
    version: dict[str, Any] = {"type": "integer", "minimum": 1}
    if versions is not None:
        version = {"enum": list(versions)}
    return {
        "type": "object",
        "title": f"{meta.name} predictions",
        "required": ["model", "version", "predictions"],
        "properties": {
            "model": {"const": meta.name},
            "version": version,
            "predictions": {"type": "array", "items": prediction_schema(meta)},
        },
    }


def _infer_body(meta: ModelMetadata, generic: Mapping[str, Any]) -> dict[str, Any]:
    """The generic OIP request with one tensor per feature, named and typed (a numeric feature
    takes any number type with values in the float32 range, a categorical one BYTES strings).
    That the tensors' shapes agree and match their data, and that each value fits its datatype,
    JSON Schema cannot say: the description does (else 422)."""
    body = copy.deepcopy(dict(generic))
    media = body["content"]["application/json"]
    props = media["schema"]["properties"]
    inputs = props["inputs"]
    tensor = inputs["items"]
    numeric = sorted(NUMPY_OF)
    tensors = []
    for f in meta.features:
        typed = copy.deepcopy(tensor)
        typed["title"] = f.name
        typed["properties"]["name"] = {"const": f.name}
        typed["properties"]["datatype"] = (
            {"enum": numeric} if f.kind == "numeric" else {"const": "BYTES"}
        )
        typed["properties"]["data"] = {
            "type": "array",
            "minItems": 1,
            "items": (
                {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
                if f.kind == "numeric"
                else {"type": "string", "maxLength": MAX_STRING}
            ),
        }
        tensors.append(typed)
    n = len(meta.features)
    inputs.update(minItems=n, maxItems=n, items={"oneOf": tensors})
    inputs["description"] = (
        f"one tensor per feature of {meta.name} v{meta.version}, each of shape [rows] or "
        "[rows, 1] with as many values, every tensor the same rows, each value fitting its "
        "datatype (else 422)"
    )
    props["outputs"]["items"]["properties"]["name"] = {"enum": list(meta.outputs)}
    media["example"] = {
        "inputs": [
            {
                "name": f.name,
                "datatype": "FP32" if f.kind == "numeric" else "BYTES",
                "shape": [1, 1],
                "data": [_example(f)],
            }
            for f in meta.features
        ]
    }
    return body


def _operation(
    generic: Mapping[str, Any], meta: ModelMetadata, versions: Sequence[int] | None, oip: bool
) -> dict[str, Any]:
    op = copy.deepcopy(dict(generic))
    op["operationId"] = f"{op['operationId']}__{meta.name}".replace("-", "_")
    op["summary"] = f"{op['summary']}: {meta.name}"
    about = f"GET /v2/models/{meta.name}" if oip else f"GET /v1/models/{meta.name}"
    op["description"] = (
        f"{meta.name} ({meta.task}, {meta.estimator}), typed from version {meta.version}'s "
        f"features. {about} describes it."
    )
    params = [p for p in op.get("parameters", []) if p["name"] != "model"]
    for p in params:
        if p["name"] == "version" and versions is not None:
            p["schema"] = (
                {"type": "string", "enum": [str(v) for v in versions]}
                if oip
                else {"type": "integer", "enum": list(versions)}
            )
            p["description"] = "a version with these features and outputs"
    op["parameters"] = params
    if oip:
        op["requestBody"] = _infer_body(meta, generic["requestBody"])
        return op
    op["requestBody"] = _body(meta, generic["requestBody"])
    ok = op["responses"]["200"]
    ok["content"] = {"application/json": {"schema": _response(meta, versions)}}
    return op


def same_contract(a: ModelMetadata, b: ModelMetadata) -> bool:
    """True when a request valid for one is valid for the other, with the same outputs."""
    return (a.task, a.features, a.classes) == (b.task, b.features, b.classes)


def add_models(
    schema: dict[str, Any], models: Sequence[tuple[ModelMetadata, Sequence[int]]]
) -> dict[str, Any]:
    """A copy of `schema` with per-model predict operations for `models`, each the served
    version's metadata and the versions sharing its contract."""
    out = copy.deepcopy(schema)
    paths: dict[str, Any] = out["paths"]
    names = sorted(meta.name for meta, _ in models)
    if not names:
        return out
    for template in (PREDICT, PREDICT_VERSION, INFER, INFER_VERSION):
        generic = paths[template]["post"]
        # Its example is a typed model's row: no longer a request this operation describes.
        generic["requestBody"]["content"]["application/json"].pop("example", None)
        for p in generic["parameters"]:
            if p["name"] == "model":
                p["schema"] = {
                    "type": "string",
                    "pattern": p["schema"]["pattern"],
                    "not": {"enum": names},
                }
                typed = template.replace("{model}", "<name>").replace("/versions/{version}", "")
                p["description"] = (
                    f"a model without a typed operation of its own (those are listed as {typed})"
                )
    for meta, versions in sorted(models, key=lambda m: m[0].name):
        for template, oip in ((PREDICT, False), (INFER, True)):
            version_template = PREDICT_VERSION if template == PREDICT else INFER_VERSION
            paths[template.replace("{model}", meta.name)] = {
                "post": _operation(paths[template]["post"], meta, None, oip)
            }
            paths[version_template.replace("{model}", meta.name)] = {
                "post": _operation(paths[version_template]["post"], meta, versions, oip)
            }
    return out


class ModelOpenApi:
    """The schema with per-model operations, rebuilt when what serves (or a model's list of
    versions) changes. Versions are immutable, so each one's metadata is read once."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._metadata: dict[tuple[str, int], ModelMetadata | None] = {}
        self._key: object = None
        self._schema: dict[str, Any] | None = None

    def schema(self, base: dict[str, Any], served: Sequence[ModelMetadata]) -> dict[str, Any]:
        models = [(meta, self._versions(meta)) for meta in sorted(served, key=lambda m: m.name)]
        key = (id(base), [(meta.name, meta.version, versions) for meta, versions in models])
        if self._schema is None or key != self._key:
            self._schema = add_models(base, models)
            self._key = key
        return self._schema

    def _other(self, model: str, version: int) -> ModelMetadata | None:
        key = (model, version)
        if key not in self._metadata:
            try:
                self._metadata[key] = self.registry.metadata(model, version)
            except (StoreError, OSError, ValueError):
                return None  # unreadable now (the store away, or a broken version): not listed
        return self._metadata[key]

    def _versions(self, meta: ModelMetadata) -> list[int]:
        """The versions a request typed by `meta` is valid for (the served one at least)."""
        try:
            listed = self.registry.versions(meta.name)
        except (StoreError, OSError):
            listed = []
        same = {meta.version}
        for version in listed:
            other = self._other(meta.name, version)
            if other is not None and same_contract(meta, other):
                same.add(version)
        return sorted(same)
