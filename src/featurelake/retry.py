"""Retry transient failures with exponential backoff (used by the registry and the writers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from loguru import logger

from featurelake.errors import ConcurrentWriteError, FeatureStoreError

if TYPE_CHECKING:
    from featurelake.config import FeatureStoreConfig

T = TypeVar("T")

# Delta's conflict exceptions share no common base class in Python: list them by name.
# They surface as pyspark exceptions whose text names the Java class.
DELTA_CONFLICT_NAMES: tuple[str, ...] = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_APPEND",
    "DELTA_CONCURRENT_DELETE_READ",
    "DELTA_CONCURRENT_DELETE_DELETE",
    "DELTA_CONCURRENT_TRANSACTION",
    "DELTA_CONCURRENT_WRITE",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
    "FileAlreadyExistsException",
    "CommitFailedError",  # delta-rs
)


def is_delta_conflict(error: BaseException) -> bool:
    """True when `error` is a Delta optimistic-concurrency conflict (safe to retry)."""
    text = f"{type(error).__name__} {error}"
    return any(name in text for name in DELTA_CONFLICT_NAMES)


def is_transient(error: BaseException) -> bool:
    """True for errors that a retry may cure: transient featurelake errors and Delta conflicts."""
    if isinstance(error, FeatureStoreError):
        return error.transient
    return is_delta_conflict(error)


def with_retries(
    operation: Callable[[], T],
    *,
    what: str,
    max_retries: int,
    backoff_ms: float,
    multiplier: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `operation`, retrying transient failures up to `max_retries` times with backoff.

    A terminal error is raised at once. When the retries run out on a Delta conflict, a
    `ConcurrentWriteError` naming `what` is raised with the last conflict as its cause.
    """
    delay = backoff_ms / 1000.0
    attempt = 0
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt >= max_retries:
                if isinstance(error, FeatureStoreError):
                    raise
                raise ConcurrentWriteError(
                    f"{what} kept conflicting with concurrent writers after {max_retries} retries.",
                    fix="raise max_retries / retry_backoff_ms in the config, or serialise the "
                    "writers of this table.",
                ) from error
            attempt += 1
            logger.debug("{} hit a transient error (attempt {}): {}", what, attempt, error)
            sleep(delay)
            delay *= multiplier


def with_config_retries(operation: Callable[[], T], *, what: str, config: FeatureStoreConfig) -> T:
    """`with_retries` with the config's `max_retries`, `retry_backoff_ms` and
    `retry_backoff_multiplier`."""
    return with_retries(
        operation,
        what=what,
        max_retries=config.max_retries,
        backoff_ms=config.retry_backoff_ms,
        multiplier=config.retry_backoff_multiplier,
    )
