"""Bearer tokens: one constant-time check for every route that takes one (admin, feedback)."""

import hmac

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from modelloop.service.errors import Unauthorized


def expected_token(secret: SecretStr | None) -> bytes | None:
    """The configured token as bytes to compare against, or None (no token configured)."""
    return secret.get_secret_value().encode() if secret is not None else None


def bearer_scheme(scheme_name: str, description: str) -> HTTPBearer:
    """Documents the scheme in OpenAPI; its answers come from `check_bearer`, not from it."""
    return HTTPBearer(auto_error=False, scheme_name=scheme_name, description=description)


def check_bearer(
    credentials: HTTPAuthorizationCredentials | None, expected: bytes, name: str
) -> None:
    """Unauthorized (401 with `WWW-Authenticate: Bearer`) unless `credentials` is a bearer
    token equal to `expected`, compared in constant time (whitespace around it ignored).
    `name` says whose token it is in the message ("admin", "feedback")."""
    if credentials is None:
        raise Unauthorized(f"{name} API needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(credentials.credentials.strip().encode(), expected):
        raise Unauthorized(f"{name} token is not valid")


def bearer_matches(authorization: str | None, expected: bytes | None) -> bool:
    """Whether an `Authorization` header value is `Bearer <expected>` (scheme in any case,
    whitespace around the token ignored), compared in constant time; False when no token is
    configured. For routes that answer everyone but show more to the token's holder."""
    if authorization is None or expected is None:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)
