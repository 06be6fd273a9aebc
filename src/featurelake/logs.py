"""Logging switches. The library logs through loguru and is silent until a caller enables it."""

from __future__ import annotations

import sys

from loguru import logger


def enable_logging(level: str = "INFO") -> None:
    """Show featurelake's log lines on stderr (jobs and the CLI call this)."""
    logger.enable("featurelake")
    logger.remove()
    logger.add(sys.stderr, level=level, format="{time:HH:mm:ss} | {level: <7} | {message}")


def disable_logging() -> None:
    """Silence featurelake's log lines again (the library default)."""
    logger.disable("featurelake")
