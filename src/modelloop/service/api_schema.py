"""Request and response shapes, for validation where speed does not matter and for /docs."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, in words")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "malformed request",
        404: "no such model or version",
        413: "body too large",
        415: "unsupported content type",
        422: "request does not fit the model",
        503: "not ready",
    }.items()
}

_VALUE = {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 10_000}, {"type": "null"}]}
PREDICT_BODY: dict[str, Any] = {
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
                            "items": {"type": "object", "additionalProperties": _VALUE},
                            "description": "one object per row: feature name -> value; null "
                            "for a missing value",
                        },
                        "ids": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1, "maxLength": 128},
                            "description": "your own prediction ids, one per instance",
                        },
                    },
                },
                "example": {"instances": [{"age": 42, "plan": "basic"}]},
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


PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PredictResponse, "description": "one prediction per instance"},
    **ERRORS,
}


class FeedbackItem(_Strict):
    id: StrictStr = Field(min_length=1, max_length=128, description="a prediction id")
    label: StrictInt | StrictFloat | StrictStr = Field(description="the true label or value")


class FeedbackRequest(_Strict):
    items: list[FeedbackItem] = Field(min_length=1, max_length=10_000)


class FeedbackResult(BaseModel):
    received: int
    matched: int
    unknown_ids: list[str]


class PromoteRequest(_Strict):
    version: StrictInt = Field(ge=1)
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
