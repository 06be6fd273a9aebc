"""The featurelake error tree.

Every error says what failed, why, and what to do next. Errors are either *terminal* (bad input,
bad configuration: retrying cannot help) or *transient* (a Delta write conflict, a Redis timeout:
the same call may succeed later). Only transient errors are retried, by `featurelake.retry`.
"""

from __future__ import annotations

from typing import Any

_SECRETS: set[str] = set()
REDACTED = "***"


def register_secret(value: str) -> None:
    """Remember a credential value so that no featurelake error or log line shows it."""
    if len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered credential value replaced by `***`."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class FeatureStoreError(Exception):
    """Base of every featurelake error.

    `fix` is the one thing the user should do next; it is appended to the message.
    """

    transient: bool = False

    def __init__(self, message: str, *, fix: str | None = None, **details: Any) -> None:
        message = redact(message)
        self.message = message
        self.fix = fix
        self.details: dict[str, Any] = details
        super().__init__(f"{message} Fix: {fix}" if fix else message)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (engine errors carry pages of stack), or its type
    name when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class TransientError(FeatureStoreError):
    """Marker base: the operation may succeed if tried again."""

    transient = True


class ConfigurationError(FeatureStoreError):
    """A configuration key is missing or holds a value outside what it allows."""


class DependencyNotInstalledError(ConfigurationError):
    """An optional dependency (an extra) is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the package '{package}', which is not installed.",
            fix=f"pip install 'featurelake[{extra}]'",
            package=package,
            extra=extra,
        )


class SchemaValidationError(FeatureStoreError):
    """A schema is invalid, or data does not match its schema."""


class FeatureNotFoundError(FeatureStoreError):
    """A feature reference names a feature that the group does not have."""


class FeatureGroupNotFoundError(FeatureNotFoundError):
    """A feature group (or the requested version of it) is not registered."""


class MaterializationError(FeatureStoreError):
    """Writing features into the Gold layer failed."""


class ConcurrentWriteError(TransientError, MaterializationError):
    """A Delta commit lost an optimistic-concurrency race; retrying is safe."""


class VirtualizationQueryError(FeatureStoreError):
    """A virtual feature query does not parse, analyse, or match its group schema."""


class QueryTimeoutError(VirtualizationQueryError):
    """A virtual query ran longer than `query_timeout_seconds` and was cancelled."""


class RegistryError(FeatureStoreError):
    """Reading or writing feature metadata in the registry failed."""


class PointInTimeError(FeatureStoreError):
    """A point-in-time (training set) request is malformed."""


class OnlineStoreError(FeatureStoreError):
    """The online store rejected an operation."""


class OnlineStoreUnavailableError(TransientError, OnlineStoreError):
    """The online store could not be reached within the configured timeout."""


class UnsupportedOperationError(FeatureStoreError):
    """The operation is not available on this kind of Spark session or backend."""


class DeltaTableNotReadableError(UnsupportedOperationError):
    """delta-rs cannot read a Delta table (a reader feature or protocol it does not support)."""


class JarDownloadError(FeatureStoreError):
    """The Delta jars could not be fetched from the Maven repository (unreachable, missing,
    or not matching their published checksum)."""


class ArgumentConflictError(FeatureStoreError, TypeError):
    """A call names the same argument twice (ours and another store's name for it), or a
    shape that featurelake reads differently; the message shows the featurelake call."""


class AmbiguousFeatureError(FeatureNotFoundError):
    """A bare feature name (no group) is a feature of several registered groups."""


# The names other feature stores give these errors, so their `except` clauses keep catching.
FeatureStoreException = FeatureStoreError
FeatureMaterializationError = MaterializationError
FeatureRegistryError = RegistryError
MetadataError = RegistryError
VirtualizationError = VirtualizationQueryError
