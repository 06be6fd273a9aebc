"""Spark sessions: the caller's own when there is one, else a local Delta-enabled session.

Nothing here runs at import time; `get_spark()` builds a session only when called.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from featurelake.config import FeatureStoreConfig
from featurelake.errors import DependencyNotInstalledError, UnsupportedOperationError
from featurelake.storage import is_object_store

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_ARTIFACTS = ("delta-spark_2.13", "delta-storage")
JARS_DIR_ENV = "FEATURELAKE_JARS_DIR"
# S3A for pyspark 4.0's Hadoop 3.4.1, and the AWS SDK v2 bundle that hadoop-aws 3.4.1 names.
S3_JARS = ("hadoop-aws-3.4.1.jar", "bundle-2.24.6.jar")
S3_PACKAGES = ("org.apache.hadoop:hadoop-aws:3.4.1", "software.amazon.awssdk:bundle:2.24.6")


def delta_version() -> str:
    """The installed delta-spark wheel's version (the jars must match it)."""
    return importlib.metadata.version("delta-spark")


def find_delta_jars(jars_dir: str | None = None) -> list[Path] | None:
    """The local Delta jars matching the wheel, or None when some are missing.

    Looked up in `jars_dir`, then `$FEATURELAKE_JARS_DIR`, then `./.jars`, then the `.jars`
    folder of a source checkout of featurelake.
    """
    version = delta_version()
    return _find_jars([f"{artifact}-{version}.jar" for artifact in DELTA_ARTIFACTS], jars_dir)


def find_s3_jars(jars_dir: str | None = None) -> list[Path] | None:
    """The local hadoop-aws and AWS SDK jars (S3A, for `s3://` stores), looked up like
    `find_delta_jars`; None when some are missing."""
    return _find_jars(list(S3_JARS), jars_dir)


def _find_jars(names: list[str], jars_dir: str | None) -> list[Path] | None:
    candidates = [
        jars_dir,
        os.environ.get(JARS_DIR_ENV),
        ".jars",
        str(Path(__file__).resolve().parents[2] / ".jars"),
    ]
    for folder in filter(None, candidates):
        jars = [Path(folder) / name for name in names]
        if all(jar.is_file() for jar in jars):
            return [jar.resolve() for jar in jars]
    return None


def needs_s3(config: FeatureStoreConfig) -> bool:
    """Whether the store lives on S3 (Spark then needs the S3A jars)."""
    return config.storage is not None or is_object_store(config.storage_path)


def spark_jars(config: FeatureStoreConfig) -> tuple[list[str], list[str]]:
    """(local jars, Maven packages to download) a local session or server of `config` needs."""
    jars: list[str] = []
    packages: list[str] = []
    delta = find_delta_jars(config.jars_dir)
    if delta:
        jars += [str(jar) for jar in delta]
    else:
        packages += [f"io.delta:{artifact}:{delta_version()}" for artifact in DELTA_ARTIFACTS]
    if needs_s3(config):
        s3 = find_s3_jars(config.jars_dir)
        if s3:
            jars += [str(jar) for jar in s3]
        else:
            packages += list(S3_PACKAGES)
    return jars, packages


def active_session() -> SparkSession | None:
    """The caller's active session (classic or Spark Connect), if any."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def get_spark(config: FeatureStoreConfig | None = None) -> SparkSession:
    """Return the active Spark session, or build a local Delta-enabled one from `config`.

    On Databricks (or any caller with a session), the caller's session is returned untouched.
    With `spark_remote` in the config or `SPARK_REMOTE` in the environment, a Spark Connect
    session to that server is returned. Otherwise a local session is built with the Delta SQL
    extension and catalog, using the local Delta jars when present and Spark's package download
    (`spark.jars.packages`) when not.
    """
    existing = active_session()
    if existing is not None:
        return existing

    from pyspark.sql import SparkSession

    remote = (config.spark_remote if config else None) or os.environ.get("SPARK_REMOTE")
    if remote:
        _require_connect_client()
        logger.info("connecting to Spark Connect at {}", remote)
        return SparkSession.builder.remote(remote).getOrCreate()

    cfg = config or FeatureStoreConfig(storage_path=".")
    # Python workers (a sync writing to the online store from the executors) run this
    # interpreter, with its packages, unless PYSPARK_PYTHON names another.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(cfg.spark_master)
        .appName(cfg.spark_app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(cfg.spark_shuffle_partitions))
        .config("spark.ui.enabled", str(cfg.spark_ui_enabled).lower())
    )
    jars, packages = spark_jars(cfg)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    if packages:
        logger.warning("local jars not found; Spark will download {}", ",".join(packages))
        builder = builder.config("spark.jars.packages", ",".join(packages))
    if cfg.spark_warehouse_dir:
        builder = builder.config("spark.sql.warehouse.dir", cfg.spark_warehouse_dir)
    for key, value in cfg.effective_spark_conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def is_connect_session(spark: SparkSession) -> bool:
    """True when `spark` talks to a Spark Connect server (no sparkContext there)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _require_connect_client() -> None:
    try:
        import grpc  # noqa: F401
        import pyspark.sql.connect.session  # noqa: F401
    except ImportError as error:
        raise DependencyNotInstalledError(
            error.name or "grpcio", "connect", "A Spark Connect session (spark_remote)"
        ) from error


CONNECT_FIX = (
    "use DataFrame and Spark SQL APIs only (spark.sql, spark.table, DataFrame methods), or run "
    "on a classic session (a single-user cluster, or a local session without spark_remote)."
)


def jvm_attribute(error: BaseException) -> str | None:
    """The JVM-only attribute (sparkContext, _jvm, ...) a Spark Connect error is about, else
    None."""
    condition = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    if condition is None or condition() != "JVM_ATTRIBUTE_NOT_SUPPORTED":
        return None
    parameters = getattr(error, "getMessageParameters", lambda: None)() or {}
    return str(parameters.get("attr_name", "a JVM attribute"))


def unsupported_over_connect(
    what: str, attribute: str, **details: object
) -> UnsupportedOperationError:
    """The typed error for `what` needing `attribute`, which a Spark Connect session lacks."""
    return UnsupportedOperationError(
        f"{what} uses `{attribute}`, which Spark Connect does not have (it needs the JVM of a "
        "classic Spark session; Databricks serverless and shared clusters are Spark Connect).",
        fix=CONNECT_FIX,
        operation=attribute,
        **details,
    )


def is_spark_frame(value: object) -> bool:
    """True for classic and Spark Connect DataFrames."""
    module = type(value).__module__
    return module.startswith("pyspark.sql") and type(value).__name__ == "DataFrame"
