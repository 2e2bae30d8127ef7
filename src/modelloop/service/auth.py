"""The admin bearer token check, shared by the admin API and the full model description."""

import hmac

from pydantic import SecretStr


class AdminToken:
    """The configured token (None: admin off), compared in constant time with a presented one,
    both stripped of surrounding whitespace."""

    def __init__(self, token: SecretStr | None) -> None:
        value = token.get_secret_value().strip() if token is not None else ""
        self.expected = value.encode() if value else None

    @property
    def enabled(self) -> bool:
        return self.expected is not None

    def matches(self, presented: str) -> bool:
        return self.expected is not None and hmac.compare_digest(
            presented.strip().encode(), self.expected
        )

    def authorises(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value is `Bearer <the token>`."""
        if authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and self.matches(credentials)
