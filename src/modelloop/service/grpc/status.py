"""Our errors as gRPC status codes: the one table, as `app.py` has for HTTP."""

import logging

import grpc
from sqlalchemy.exc import SQLAlchemyError

from modelloop.service.errors import ServiceError
from modelloop.store.errors import RegistryUnavailable

log = logging.getLogger("modelloop.service.grpc")

# By HTTP status: the caller's mistakes are INVALID_ARGUMENT, never UNKNOWN or INTERNAL.
CODE_OF = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    # gRPC's own answer to a message over the size limit.
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}

Failure = tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]


def failure(exc: Exception, method: str) -> Failure:
    """The status, message and trailing metadata (`retry-after`, as HTTP's `Retry-After`)
    that answer `exc`."""
    if isinstance(exc, ServiceError):
        code = CODE_OF.get(exc.status, grpc.StatusCode.INTERNAL)
        trailers = tuple((k.lower(), v) for k, v in exc.headers.items() if k == "Retry-After")
        return code, exc.message, trailers
    if isinstance(exc, SQLAlchemyError):
        # The driver's text may name the host, the user, the query: it stays in our log.
        text = str(exc).strip()
        log.warning("database error on %s: %s", method, text.splitlines()[0] if text else exc)
        return grpc.StatusCode.UNAVAILABLE, "database unavailable, try again", ()
    if isinstance(exc, RegistryUnavailable):
        log.warning("%s", exc)
        return grpc.StatusCode.UNAVAILABLE, f"registry unavailable, try again: {exc}", ()
    log.exception("internal error on %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error", ()
