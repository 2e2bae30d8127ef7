"""Request and response shapes, for validation where speed does not matter and for /docs.

The OpenAPI schema is a contract, checked by schemathesis (tests/service/test_svc_schemathesis.py):
each route declares every status it can answer, with its body; request models are strict (no
coercion, no unknown fields) and carry the limits the handlers enforce.
"""

from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from modelloop.service.feedback import MAX_LABEL
from modelloop.service.ids import MAX_ID
from modelloop.service.inputs import FLOAT32_MAX, MAX_STRING
from modelloop.service.oip import NUMPY_OF
from modelloop.service.versions import MAX_VERSION, MAX_VERSION_DIGITS, parse_version

MODEL_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, in words")


_ERROR_TEXT = {
    400: "malformed request: an empty body, or a body that is not JSON",
    401: "no bearer token, or a wrong one (admin: MODELLOOP_ADMIN_TOKEN; feedback: "
    "MODELLOOP_FEEDBACK_TOKEN, when set)",
    403: "admin API disabled (no MODELLOOP_ADMIN_TOKEN on the service)",
    404: "no such model, version or job",
    409: "nothing to roll back to",
    413: "body over MODELLOOP_MAX_BODY_BYTES, or more rows than MODELLOOP_MAX_INSTANCES",
    415: "a body not declared JSON (for OIP infer: or binary tensors, or no type from a "
    "client that is not a browser)",
    422: "well-formed but not valid: the message names the field (or feature and row)",
    503: "not ready: no version serving yet, a version that does not load, draining, the "
    "database unavailable, or the prediction log full and not writable (see Retry-After)",
}


def responses(
    *codes: int,
    ok: int = 200,
    body: Any = None,
    text: str = "OK",
    html: bool = False,
    **extra: Any,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: `ok` (with model `body`, if any) and each error code with ErrorBody.

    FastAPI files a `model` under the route's media type, so a route answering HTML (`html`)
    gets its JSON error body spelt out instead."""
    out: dict[int | str, dict[str, Any]] = {ok: {"description": text, **extra}}
    if body is not None:
        out[ok]["model"] = body
    for code in codes:
        out[code] = {"description": _ERROR_TEXT[code]}
        if html:
            out[code]["content"] = {"application/json": {"schema": ErrorBody.model_json_schema()}}
        else:
            out[code]["model"] = ErrorBody
        if code == 401:
            out[code]["headers"] = {
                "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
            }
    return out


# -- path parameters -----------------------------------------------------------------------
# Documented here, checked by the handlers (and the prediction fast path, which FastAPI's
# validation never sees): a name or version that cannot exist is simply not found (404).

ModelName = Annotated[
    str,
    Path(
        description="model name",
        examples=["default"],
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    ),
]


def _version(value: Any) -> Any:
    """A version segment as `parse_version` reads it (Python's `int` would take '٣' as 3 and
    fail with a 500 on 5,000 digits)."""
    if isinstance(value, str):
        number = parse_version(value)
        if number is None:
            raise ValueError(f"must be a version number of at most {MAX_VERSION_DIGITS} digits")
        return number
    return value


Version = Annotated[
    int,
    BeforeValidator(_version),
    Path(
        description="version number",
        examples=[1],
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION},
    ),
]
OipVersion = Annotated[
    str,
    Path(
        description="version number (a string in the Open Inference Protocol)",
        examples=["1"],
        json_schema_extra={"pattern": f"^[0-9]{{1,{MAX_VERSION_DIGITS}}}$"},
    ),
]


# -- v1 predict ----------------------------------------------------------------------------

_VALUE = {
    "anyOf": [
        {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX},
        {"type": "string", "maxLength": MAX_STRING},
        {"type": "null"},
    ]
}
_EXAMPLE_ROW = {
    "age": 52,
    "income": 41000,
    "tenure_months": 3,
    "sessions_per_week": 1,
    "support_tickets": 4,
    "region": "south",
    "plan": "basic",
    "device": "ios",
}


def predict_body(max_instances: int) -> dict[str, Any]:
    """The predict request (validated by hand on the hot path, so documented by hand)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["instances"],
                        "additionalProperties": False,
                        "properties": {
                            "instances": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": max_instances,
                                "items": {"type": "object", "additionalProperties": _VALUE},
                                "description": "one object per row: feature name -> value (a "
                                "number, a string, or null for a missing value). Each row must "
                                "have exactly the model's features (GET /v1/models/{model}); "
                                "numeric features take numbers or null, categorical ones "
                                "strings, integers or null (else 422)",
                            },
                            "ids": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": max_instances,
                                "uniqueItems": True,
                                "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
                                "description": "your own prediction ids, one per instance: "
                                "printable (no control characters), no comma, not starting "
                                "with '~' (generated ids do), unique (else 422)",
                            },
                        },
                    },
                    "example": {"instances": [_EXAMPLE_ROW]},
                }
            },
        }
    }


class Prediction(BaseModel):
    id: str
    label: int | str | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Prediction]


# -- feedback ------------------------------------------------------------------------------


class FeedbackItem(_Strict):
    id: StrictStr = Field(
        min_length=1,
        max_length=MAX_ID,
        description="a prediction id, as predict answered it (generated ids start with '~'): "
        "printable, no comma (else 422)",
    )
    label: StrictInt | StrictFloat | StrictStr = Field(
        description="the true label or value, checked against the version that made the "
        "prediction (else 422): for a classification one of its classes, of the class's type "
        "(GET /v1/models/{model}: `classes`; 1 is not '1'), for a regression a finite number. "
        f"Strings up to {MAX_LABEL} characters",
        json_schema_extra={"maxLength": MAX_LABEL},
    )


class FeedbackRequest(_Strict):
    items: list[FeedbackItem] = Field(
        min_length=1,
        max_length=10_000,
        description="one label per prediction id is kept, the latest: a later item (or "
        "request) for the same id replaces the label. One bad item refuses the whole request "
        "(422), unknown ids do not",
    )


class FeedbackResult(BaseModel):
    received: int = Field(description="items in the request")
    matched: int = Field(description="items whose id is a logged prediction")
    unknown_ids: list[str] = Field(description="ids not in the prediction log (not stored)")


# -- models --------------------------------------------------------------------------------


class VersionSummary(BaseModel):
    version: int
    created_at: float
    estimator: str
    trigger: str
    metrics: dict[str, float | None]
    parent_version: int | None


class ModelDescription(BaseModel):
    name: str
    active_version: int | None
    serving_version: int | None
    task: str
    primary_metric: str
    metrics: dict[str, float | None]
    features: list[dict[str, Any]] = Field(description="name, kind and categories, in order")
    classes: list[int | str]
    versions: list[VersionSummary]
    history: list[dict[str, Any]] | None = Field(
        default=None,
        description="promotions and rollbacks (GET /v1/models/{model} only); without the "
        "admin token actors lose their host or address and reasons their file paths",
    )
    parity: dict[str, Any] | None = Field(default=None, description="ONNX/sklearn parity")
    data: dict[str, Any] | None = Field(
        default=None, description="training data; without the admin token file base names only"
    )


class ModelList(BaseModel):
    models: list[ModelDescription]


class DriftReport(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    version: int
    time: float
    window_start: float
    window_end: float
    rows: int
    verdict: str
    state: str


# -- admin ---------------------------------------------------------------------------------


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer includes 2.0; accept it as 2 (and leave the rest to StrictInt)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole_number)]


class PromoteRequest(_Strict):
    version: WholeNumber = Field(
        ge=1, le=MAX_VERSION, description="the version to load and activate"
    )
    reason: StrictStr = Field(default="promoted through the admin API", max_length=1000)


class RollbackRequest(_Strict):
    reason: StrictStr = Field(default="rolled back through the admin API", max_length=1000)


class RetrainRequest(_Strict):
    reason: StrictStr = Field(default="requested through the admin API", max_length=1000)


class SwapResult(BaseModel):
    model: str
    from_version: int | None
    to_version: int
    serving_version: int | None


class JobOut(BaseModel):
    id: int
    model: str
    kind: str
    status: str
    trigger: str
    reason: str
    created_at: float
    claimed_at: float | None
    lease_until: float | None
    worker: str | None
    attempts: int
    finished_at: float | None
    result: dict[str, Any] | None
    error: str | None


class JobList(BaseModel):
    jobs: list[JobOut]


# -- Open Inference Protocol v2 ------------------------------------------------------------


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, description="why not ready (only when not ready)")


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, str]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[int | float | str] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, str]
    outputs: list[OutputTensor]


_PARAMETERS = {"type": ["object", "null"], "description": "free-form parameters"}
_INFER_EXAMPLE = {
    "inputs": [
        {
            "name": name,
            "datatype": "BYTES" if isinstance(value, str) else "FP32",
            "shape": [1, 1],
            "data": [value],
        }
        for name, value in _EXAMPLE_ROW.items()
    ]
}

INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An inference request in JSON. With the binary tensor data extension, "
        "the JSON header is followed by the tensors' bytes, its length given in the "
        "Inference-Header-Content-Length header and each tensor's size in its "
        "parameters.binary_data_size.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {
                            "type": ["string", "null"],
                            "maxLength": MAX_ID - 2,
                            "description": "your request id; its rows are logged as "
                            f"<id>:<row> (at most {MAX_ID} characters), printable, no comma, "
                            "not starting with '~' (else 422); none: a generated one",
                        },
                        "parameters": _PARAMETERS,
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype", "data"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 2,
                                        "items": {"type": "integer", "minimum": 0},
                                    },
                                    "datatype": {"enum": ["BYTES", *NUMPY_OF]},
                                    "parameters": _PARAMETERS,
                                    "data": {
                                        "type": "array",
                                        "description": "the values, flat or nested by row; "
                                        "numbers, or strings for BYTES",
                                    },
                                },
                            },
                            "description": "one tensor per feature, named and typed as in the "
                            "model's metadata (GET /v2/models/{model}), of shape [rows] or "
                            "[rows, 1] (else 422)",
                        },
                        "outputs": {
                            "type": ["array", "null"],
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": _PARAMETERS,
                                },
                            },
                        },
                    },
                },
                "example": _INFER_EXAMPLE,
            }
        },
    }
}
INFER_RESPONSES = responses(
    400,
    404,
    413,
    415,
    422,
    503,
    body=InferResponse,
    text="the outputs; with binary outputs requested, the JSON header followed by the "
    "tensors' bytes (application/octet-stream, header length in "
    "Inference-Header-Content-Length)",
    content={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
)
