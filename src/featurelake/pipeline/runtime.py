"""What every entry point needs: config with overrides, a Spark session, exit codes, and the
plumbing of scheduled jobs (`jobs/*.py`)."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.config import DEFAULT_CONFIG_PATH, FeatureStoreConfig, load_config
from featurelake.errors import (
    ConfigurationError,
    FeatureNotFoundError,
    FeatureStoreError,
    PointInTimeError,
    SchemaValidationError,
    VirtualizationQueryError,
)
from featurelake.logs import enable_logging, quiet_engine_logs
from featurelake.pipeline.sources import parse_time
from featurelake.session import active_session, get_spark

if TYPE_CHECKING:
    from datetime import datetime

    from pyspark.sql import SparkSession

CONFIG_ENV = "FEATURELAKE_CONFIG"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# Errors about what the user asked for: retrying cannot help, changing the request can.
USER_ERRORS: tuple[type[FeatureStoreError], ...] = (
    ConfigurationError,
    SchemaValidationError,
    FeatureNotFoundError,
    PointInTimeError,
    VirtualizationQueryError,
)


def exit_code(error: BaseException) -> int:
    """2 for user errors, 1 for failures.

    User errors: configuration, schema, not-found and request errors, and any other terminal
    featurelake error raised by featurelake's own checks. Failures: transient errors that ran
    out of retries, featurelake errors caused by an engine or storage failure, anything else.
    """
    if isinstance(error, FeatureStoreError):
        if error.transient:
            return EXIT_FAILURE
        if isinstance(error, USER_ERRORS):
            return EXIT_USAGE
        cause = error.__cause__
        return EXIT_FAILURE if cause is not None and not _is_ours(cause) else EXIT_USAGE
    return EXIT_FAILURE


def _is_ours(error: BaseException) -> bool:
    return isinstance(error, FeatureStoreError)


def one_line(error: BaseException) -> str:
    """`ErrorType: message` on one line (engine errors keep only their first line)."""
    if isinstance(error, FeatureStoreError):
        text = " ".join(str(error).split())
    else:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parse_spark_conf(pairs: Iterable[str]) -> dict[str, str]:
    """`key=value` strings as a dict; anything else is a ConfigurationError."""
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"The Spark setting '{pair}' is not of the form key=value.",
                fix="write it as --spark-conf spark.sql.shuffle.partitions=8.",
            )
        conf[key.strip()] = value.strip()
    return conf


def default_config_path() -> Path:
    """`$FEATURELAKE_CONFIG`, else `conf/featurelake.yaml` under the cwd."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_settings(
    path: str | os.PathLike[str] | None = None, spark_conf: Mapping[str, str] | None = None
) -> FeatureStoreConfig:
    """The store config at `path` (or the default), with Spark settings added on top.

    A relative local `storage_path` is made absolute against the cwd (Delta's path tables
    need absolute paths); URIs such as `s3://...` or `dbfs:/...` are kept as they are.
    """
    config = load_config(path or default_config_path())
    if spark_conf:
        config = config.replace(spark_conf={**config.spark_conf, **spark_conf})
    return absolute_storage(config)


def absolute_storage(config: FeatureStoreConfig) -> FeatureStoreConfig:
    """`config` with a relative local `storage_path` resolved against the cwd."""
    path = config.storage_path
    if _URI.match(path) or Path(path).is_absolute():
        return config
    return config.replace(storage_path=str(Path(path).resolve()))


def submitted_spark_conf() -> dict[str, str] | None:
    """The settings given to `spark-submit` when this process was launched by it, else None.

    spark-submit starts the JVM first and hands its gateway to Python through the environment;
    its `--master` and `--conf` values are then readable before any session exists.
    """
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return None
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return {str(k): str(v) for k, v in SparkConf().getAll()}


def session_for(
    config: FeatureStoreConfig, overrides: Mapping[str, str] | None = None
) -> SparkSession:
    """The active session (Databricks, a caller's), else one built from `config`.

    Under spark-submit, everything given to spark-submit (`--master`, `--jars`, `--conf`) wins
    over the config file. `overrides` (from
    `--spark-conf`) are applied to an existing session where Spark allows it at runtime.
    """
    existing = active_session()
    if existing is None:
        submitted = submitted_spark_conf()
        if submitted:
            config = config.replace(
                spark_master=submitted.get("spark.master", config.spark_master),
                spark_conf={**config.spark_conf, **submitted},
            )
        return get_spark(config)
    for key, value in (overrides or {}).items():
        if existing.conf.get(key, None) == value:
            continue
        if existing.conf.isModifiable(key):
            existing.conf.set(key, value)
        else:
            logger.warning(
                "{} is fixed when a Spark session starts; it applies to new sessions only", key
            )
    return existing


def stop_session(spark: SparkSession) -> None:
    """Stop a session this process started (never a caller's or Databricks' own).

    Ending it before the interpreter exits avoids an abort at shutdown ("terminate called
    without an active exception") seen when a live session meets Arrow and delta-rs teardown.
    """
    try:
        spark.stop()
    except Exception as error:  # already stopped, or the JVM is gone: nothing left to do
        logger.debug("stopping Spark: {}", error)


def _master(spark: SparkSession) -> str:
    try:
        return str(spark.conf.get("spark.master", None) or "Spark Connect")
    except Exception:  # Spark Connect servers may refuse to show it
        return "Spark Connect"


# -- scheduled jobs ----------------------------------------------------------------------------


def time_argument(text: str) -> datetime:
    """argparse `type=` for times: a usage error (exit 2) instead of a traceback."""
    try:
        return parse_time(text)
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(" ".join(str(error).split())) from None


def job_parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes: --config, --spark-conf, --log-level."""
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument(
        "--config",
        default=None,
        help=f"store config YAML (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting; repeatable",
    )
    parser.add_argument("--log-level", default="INFO", help="loguru level (default: INFO)")
    return parser


JobBody = Callable[[argparse.Namespace, FeatureStoreConfig, "SparkSession"], Any]


def run_job(
    name: str,
    parser: argparse.ArgumentParser,
    body: JobBody,
    argv: list[str] | None = None,
) -> int:
    """Parse arguments, log, build config and session, run `body`; return the exit code.

    The body's result is printed to stdout as one JSON line. A featurelake error is logged as
    one line naming its type; anything else with its traceback. A session the job started
    (spark-submit, local) is stopped at the end; a caller's (Databricks) is left running.
    """
    args = parser.parse_args(argv)
    enable_logging(args.log_level.upper())
    quiet_engine_logs(debug=args.log_level.upper() == "DEBUG")
    own_session = active_session() is None
    spark: SparkSession | None = None
    try:
        overrides = parse_spark_conf(args.spark_conf)
        config = load_settings(args.config, overrides)
        logger.info("{}: store {} ({})", name, config.storage_path, config.mode.value)
        spark = session_for(config, overrides)
        logger.info("{}: Spark {} on {}", name, spark.version, _master(spark))
        result = body(args, config, spark)
    except Exception as error:
        code = exit_code(error)
        if isinstance(error, FeatureStoreError):
            logger.error("{} failed: {}", name, one_line(error))
        else:
            logger.opt(exception=error).error("{} failed: {}", name, one_line(error))
        return code
    finally:
        if own_session and spark is not None:
            stop_session(spark)
    logger.success("{} done", name)
    if result is not None:
        # The last stdout line is the result, for schedulers that keep it (Airflow's XCom).
        print(json.dumps(result, default=str), flush=True)
    return EXIT_OK
