"""Errors of the HTTP server and the stable JSON codes every error is answered with.

An error response is `{"error": {"code", "message", "fix", "request_id"}}`, never a stack trace.
`error_status(error)` maps each `FeatureStoreError` subclass to an HTTP status and a code; the
most specific class in the table wins.
"""

from __future__ import annotations

from typing import Any

from featurelake.errors import (
    ConcurrentWriteError,
    ConfigurationError,
    DependencyNotInstalledError,
    FeatureGroupNotFoundError,
    FeatureNotFoundError,
    FeatureStoreError,
    MaterializationError,
    OnlineStoreError,
    OnlineStoreUnavailableError,
    PointInTimeError,
    RegistryError,
    SchemaValidationError,
    UnsupportedOperationError,
    VirtualizationQueryError,
)


class AuthenticationError(FeatureStoreError):
    """The request has no API key, or one that is unknown, wrong or revoked (HTTP 401)."""

    def __init__(self, message: str, *, code: str, fix: str, key_id: str | None = None) -> None:
        super().__init__(message, fix=fix, code=code, key_id=key_id)
        self.code = code
        self.key_id = key_id


class PermissionDeniedError(FeatureStoreError):
    """The API key may not do this: its role is too low, or a feature is outside its ACL (403)."""

    def __init__(self, message: str, *, code: str, fix: str, **details: Any) -> None:
        super().__init__(message, fix=fix, code=code, **details)
        self.code = code


class EventTimeInFutureError(SchemaValidationError):
    """A written record's event time is later than now plus the allowed clock skew (422)."""


class ForeignShapeError(SchemaValidationError):
    """A request body in another feature service's shape that featurelake cannot take as its
    own without misreading it; the message shows featurelake's body to send (422)."""


class HistoricalTooLargeError(SchemaValidationError):
    """A historical request would build more values than the server's limit (422)."""


class InvalidPageTokenError(SchemaValidationError):
    """A historical `page_token` this server did not give for this request."""


class RetryLaterError(FeatureStoreError):
    """The server cannot take the request now; the answer carries `Retry-After`."""

    status: int = 503

    def __init__(self, message: str, *, code: str, fix: str, retry_after: float) -> None:
        super().__init__(message, fix=fix, code=code)
        self.code = code
        self.retry_after = retry_after


class TooManyRequestsError(RetryLaterError):
    """The API key has as many requests in flight as it may (429)."""

    status = 429


class ServerBusyError(RetryLaterError):
    """Every thread and queue place for offline work is taken (503)."""

    status = 503


class OfflineTimeoutError(RetryLaterError):
    """Offline work ran past the server's timeout for one request (504)."""

    status = 504


class NotFoundError(FeatureStoreError):
    """Something the request names (statistics, a route) does not exist (404)."""

    def __init__(self, message: str, *, code: str, fix: str) -> None:
        super().__init__(message, fix=fix)
        self.code = code


# Most specific first: the first class an error is an instance of decides.
STATUS_CODES: tuple[tuple[type[FeatureStoreError], int, str], ...] = (
    (FeatureGroupNotFoundError, 404, "group_not_found"),
    (EventTimeInFutureError, 422, "event_time_in_future"),
    (ForeignShapeError, 422, "foreign_shape"),
    (HistoricalTooLargeError, 422, "historical_too_large"),
    (InvalidPageTokenError, 422, "invalid_page_token"),
    (FeatureNotFoundError, 404, "feature_not_found"),
    (SchemaValidationError, 422, "schema_validation_failed"),
    (PointInTimeError, 422, "invalid_time_range"),
    (VirtualizationQueryError, 422, "virtual_query_invalid"),
    (ConcurrentWriteError, 409, "write_conflict"),
    (MaterializationError, 409, "materialization_failed"),
    (OnlineStoreUnavailableError, 503, "online_store_unavailable"),
    (OnlineStoreError, 502, "online_store_failed"),
    (RegistryError, 503, "registry_unavailable"),
    (DependencyNotInstalledError, 501, "dependency_not_installed"),
    (ConfigurationError, 503, "not_configured"),
    (UnsupportedOperationError, 400, "unsupported_operation"),
)


def error_status(error: FeatureStoreError) -> tuple[int, str]:
    """HTTP status and stable code of a featurelake error."""
    if isinstance(error, AuthenticationError):
        return 401, error.code
    if isinstance(error, PermissionDeniedError):
        return 403, error.code
    if isinstance(error, NotFoundError):
        return 404, error.code
    if isinstance(error, RetryLaterError):
        return error.status, error.code
    for kind, status, code in STATUS_CODES:
        if isinstance(error, kind):
            return status, code
    return 400, "feature_store_error"


def error_body(
    code: str, message: str, fix: str | None, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    """The JSON body of every error response."""
    body: dict[str, Any] = {"code": code, "message": message, "fix": fix, "request_id": request_id}
    body.update({k: v for k, v in extra.items() if v is not None})
    return {"error": body}
