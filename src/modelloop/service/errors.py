"""The service's errors, each with its HTTP status. One handler turns them into JSON."""

import math
from collections.abc import Mapping
from typing import ClassVar


class ServiceError(Exception):
    status = 500
    class_headers: ClassVar[Mapping[str, str]] = {}  # sent with every error of the class

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: Mapping[str, str] = (
            {**self.class_headers, **headers} if headers else self.class_headers
        )


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401
    class_headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class Unprocessable(ServiceError):
    status = 422


class Unavailable(ServiceError):
    status = 503

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        """`retry_after`: seconds the caller should wait, sent as `Retry-After` (RFC 9110)."""
        headers = None if retry_after is None else retry_after_header(retry_after)
        super().__init__(message, headers)


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
