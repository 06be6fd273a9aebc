"""Logging switches. The library logs through loguru and is silent until a caller enables it."""

from __future__ import annotations

import logging
import sys
from typing import Any

from loguru import logger

from featurelake.errors import redact

# The Python loggers of Spark and py4j. PySpark logs every failed query as a JSON record with the
# whole Java stack (DataFrameQueryContextLogger, SQLQueryContextLogger) before raising it.
ENGINE_LOGGERS = ("DataFrameQueryContextLogger", "SQLQueryContextLogger", "pyspark", "py4j")


def enable_logging(level: str = "INFO") -> None:
    """Show featurelake's log lines on stderr (jobs and the CLI call this)."""
    logger.enable("featurelake")
    logger.remove()
    logger.add(sys.stderr, level=level, format="{time:HH:mm:ss} | {level: <7} | {message}")
    logger.configure(patcher=_redact_record)


def _redact_record(record: Any) -> None:
    """No credential value reaches a log line (see `errors.register_secret`)."""
    record["message"] = redact(record["message"])


def disable_logging() -> None:
    """Silence featurelake's log lines again (the library default)."""
    logger.disable("featurelake")


def quiet_engine_logs(debug: bool = False) -> None:
    """Keep Spark's and py4j's own log records off the user's terminal (the CLI, jobs and
    notebooks call this), so a failure shows as featurelake's one-line typed error; `debug`
    gives them back."""
    from pyspark.logger import PySparkLogger  # PySpark logs through its own logger class

    for name in ENGINE_LOGGERS:
        PySparkLogger.getLogger(name).setLevel(logging.NOTSET if debug else logging.CRITICAL)
