"""API errors with privacyIDEA's error codes and the HTTP status that fits."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as ``result.status=false`` with ``result.error``."""

    status_code = 400
    code = 905
    # privacyIDEA answers its refusals with ``detail: null`` (a wrong password at /auth aside).
    detail_null = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParameterError(ApiError):
    """A request parameter is missing or invalid."""


class AuthError(ApiError):
    """Authentication is missing or failed."""

    status_code = 401
    code = 4031
    detail_null = False


class TokenError(AuthError):
    """The access token a route needs is missing or unusable."""

    detail_null = True


class MissingToken(TokenError):
    """No access token was sent (privacyIDEA's code for a missing header)."""

    code = 4033


class InvalidToken(TokenError):
    """The access token is forged, malformed or names no known role."""

    code = 4304


class ExpiredToken(TokenError):
    """The access token's lifetime is over."""

    code = 4305


class Forbidden(ApiError):
    """The caller is authenticated but may not do this."""

    status_code = 403
    code = 303


class UnknownUser(ApiError):
    """The named user is in no realm's user store (privacyIDEA's user error)."""

    code = 904


class CAError(ApiError):
    """The CA (or the token's state on the CA) refuses the action (privacyIDEA's CA error)."""

    code = 503


class Locked(ApiError):
    """The token is locked (revoked for good): the action is not possible."""

    code = 1007


class NotFound(ApiError):
    """The named resource does not exist."""

    status_code = 404
    code = 601


class Gone(ApiError):
    """The resource existed but was deleted for good."""

    status_code = 410
    code = 601


class Conflict(ApiError):
    """The request conflicts with the current state."""

    status_code = 409
    code = 301


class PayloadTooLarge(ApiError):
    """The request body is larger than the api reads."""

    status_code = 413
    code = 905


class Unavailable(ApiError):
    """A dependency (database, broker) is not reachable."""

    status_code = 503
    code = 903
