"""Store configuration: `FeatureStoreConfig`, loaded from YAML or a dict, overridable by env."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from featurelake.config_aliases import translate
from featurelake.errors import ConfigurationError
from featurelake.storage import (
    SECRET_SPARK_KEYS,
    StorageSettings,
    parse_bool,
    register,
    spark_conf,
)

ENV_PREFIX = "FEATURELAKE_"
DEFAULT_CONFIG_PATH = Path("conf/featurelake.yaml")


class StoreMode(StrEnum):
    """Which offline strategy a store uses by default."""

    MATERIALIZED = "MATERIALIZED"
    VIRTUALIZED = "VIRTUALIZED"
    HYBRID = "HYBRID"
    ONLINE = "ONLINE"


FeatureStoreMode = StoreMode
"""The name other feature stores give `StoreMode`."""


class OnlineBackend(StrEnum):
    """Online store implementations, chosen by name."""

    MEMORY = "memory"
    REDIS = "redis"


ENUM_KEYS: dict[str, type[StrEnum]] = {"mode": StoreMode, "online_backend": OnlineBackend}
REGISTRY_ENGINES = ("auto", "delta-rs", "spark")

DEFAULT_SPARK_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.pandas.convertToArrowArraySafely": "true",
}


@dataclass(frozen=True)
class FeatureStoreConfig:
    """Every setting of a feature store. Build with `from_yaml`, `from_dict` or the constructor."""

    storage_path: str
    mode: StoreMode = StoreMode.MATERIALIZED
    catalog: str | None = None
    database: str | None = None
    hybrid_threshold_rows: int = 100_000
    duckdb_threshold_rows: int = 250_000
    small_write_max_rows: int = 10_000
    """pandas/Arrow writes of at most this many rows go through delta-rs, without Spark (0:
    always Spark)."""
    gold_deletion_vectors: bool = False
    """New Gold tables keep deletion vectors: a MERGE (an incremental materialization) marks
    the rows it replaces instead of copying the rest of their files; delta-rs small writes
    then go to Spark for those tables."""
    max_retries: int = 5
    retry_backoff_ms: int = 100
    retry_backoff_multiplier: float = 2.0
    metadata_cache_ttl_seconds: float = 30.0
    registry_engine: str = "auto"
    enable_online_store: bool = False
    online_backend: OnlineBackend = OnlineBackend.MEMORY
    online_url: str | None = None
    online_timeout_ms: int = 500
    online_history_size: int = 0
    """Versions of each online feature value kept per entity (0: only the latest)."""
    sync_to_online: bool = False
    auto_materialize_on_read: bool = False
    auto_materialize_after_reads: int = 3
    quality_on_write: bool = True
    spark_master: str = "local[*]"
    spark_app_name: str = "featurelake"
    spark_shuffle_partitions: int = 8
    spark_warehouse_dir: str | None = None
    spark_ui_enabled: bool = False
    spark_remote: str | None = None
    jars_dir: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    virtual_source_paths: tuple[str, ...] = ()
    virtual_engine: str = "spark"
    """The engine of virtual queries defined without `engine=` ("spark" or "duckdb")."""
    query_timeout_seconds: float | None = None
    """A virtual query read that runs longer is cancelled with a VirtualizationQueryError."""
    """Folders (besides the store) whose Delta tables DuckDB virtual queries may read."""
    storage: StorageSettings | None = None

    def __post_init__(self) -> None:
        # Enum-valued keys take their names in any case, as in YAML: mode="hybrid".
        for name, kind in ENUM_KEYS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                object.__setattr__(self, name, _coerce(name, kind.__name__, value))
        if isinstance(self.registry_engine, str):
            object.__setattr__(self, "registry_engine", self.registry_engine.strip().lower())
        _validate(self)
        if self.storage is not None:
            # delta-rs calls anywhere in the process find the options of paths under the store.
            register(self.storage_path, self.storage)

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
    ) -> FeatureStoreConfig:
        """Build a config from a mapping; `FEATURELAKE_<KEY>` variables in `environ` override it.

        `environ` defaults to `os.environ`; pass `{}` to ignore the environment.
        """
        if not isinstance(values, Mapping):
            raise ConfigurationError(
                f"The configuration must be a mapping of keys to values, got "
                f"{type(values).__name__}.",
                fix="write the config as 'key: value' lines (see conf/featurelake.yaml).",
            )
        values = translate(values)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigurationError(
                f"Unknown configuration key(s): {', '.join(unknown)}.",
                fix=f"use only these keys: {', '.join(sorted(known))}.",
                keys=unknown,
            )
        merged: dict[str, Any] = dict(values)
        env = os.environ if environ is None else environ
        for name in known:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                merged[name] = raw
        if "storage_path" not in merged or merged["storage_path"] in (None, ""):
            raise ConfigurationError(
                "The configuration key 'storage_path' is missing.",
                fix="set storage_path to the folder or URI of the store (for example "
                "'./demo_store' or 's3://bucket/features'), in the YAML file or as "
                "FEATURELAKE_STORAGE_PATH.",
                key="storage_path",
            )
        kwargs = {name: _coerce(name, known[name].type, value) for name, value in merged.items()}
        return cls(**kwargs)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
    ) -> FeatureStoreConfig:
        """Load a config file. Relative `storage_path`/`jars_dir` are taken from the cwd."""
        file = Path(path)
        if not file.is_file():
            raise ConfigurationError(
                f"The config file {file} does not exist.",
                fix="create it with 'featurelake init', or pass --config with the right path.",
            )
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigurationError(
                f"The config file {file} is not valid YAML: {error}",
                fix="correct the YAML syntax at the position shown.",
            ) from error
        return cls.from_dict(loaded, environ=environ)

    def replace(self, **changes: Any) -> FeatureStoreConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def effective_spark_conf(self) -> dict[str, str]:
        """Spark settings: featurelake's defaults, the storage section's `fs.s3a.*` settings
        (credentials included), then the user's `spark_conf`."""
        return {**self.public_spark_conf, **self.storage_spark_secrets}

    @property
    def public_spark_conf(self) -> dict[str, str]:
        """`effective_spark_conf` without credentials (for command lines and logs)."""
        stored = spark_conf(self.storage, with_secrets=False) if self.storage else {}
        user = {str(k): str(v) for k, v in self.spark_conf.items()}
        return {**DEFAULT_SPARK_CONF, **stored, **user}

    @property
    def storage_spark_secrets(self) -> dict[str, str]:
        """The S3A credential settings of the storage section (secret values)."""
        if self.storage is None:
            return {}
        full = spark_conf(self.storage, with_secrets=True)
        secret = {"spark.hadoop." + key for key in SECRET_SPARK_KEYS}
        return {k: v for k, v in full.items() if k in secret}


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Turn YAML/env values into the field's type, with an error naming the key."""
    text = str(annotation)
    try:
        if value is None:
            return None
        if "StorageSettings" in text:
            if isinstance(value, StorageSettings):
                return value
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return StorageSettings.from_mapping(value)
        for kind in ENUM_KEYS.values():
            if kind.__name__ in text:
                return value if isinstance(value, kind) else _enum_member(kind, value)
        if text.startswith("bool"):
            parsed = parse_bool(value)
            if parsed is None:
                raise ValueError(value)
            return parsed
        if text.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if text.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if text.startswith("tuple"):
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            return tuple(value)
        if text.startswith("Mapping"):
            if isinstance(value, str):
                loaded = yaml.safe_load(value)
                value = loaded if isinstance(loaded, Mapping) else _parse_pairs(value)
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return {str(k): str(v) for k, v in value.items()}
        return str(value)
    except ValueError as error:
        raise ConfigurationError(
            f"The configuration key '{name}' has the value {value!r}, which is not "
            f"{_describe(annotation)}.",
            fix=f"set '{name}' to {_describe(annotation)}.",
            key=name,
        ) from error


def _enum_member(kind: type[StrEnum], value: Any) -> StrEnum:
    """The member of `kind` named or valued `value`, in any case (else ValueError)."""
    wanted = str(getattr(value, "value", value)).strip().lower()
    for member in kind:
        if wanted in (member.name.lower(), member.value.lower()):
            return member
    raise ValueError(value)


def _parse_pairs(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(text)
        pairs[key.strip()] = val.strip()
    return pairs


def _describe(annotation: Any) -> str:
    text = str(annotation)
    if "StoreMode" in text:
        return "one of " + ", ".join(m.value for m in StoreMode)
    if "OnlineBackend" in text:
        return "one of " + ", ".join(b.value for b in OnlineBackend)
    if text.startswith("bool"):
        return "true or false"
    if text.startswith("int"):
        return "a whole number"
    if text.startswith("float"):
        return "a number"
    if text.startswith("Mapping"):
        return "a mapping of Spark keys to values"
    if text.startswith("tuple"):
        return "a list of paths (or one comma-separated string)"
    if "StorageSettings" in text:
        return "a mapping of storage keys (endpoint, region, credentials, ...)"
    return "a string"


def _validate(config: FeatureStoreConfig) -> None:
    if not isinstance(config.storage_path, str) or not config.storage_path.strip():
        raise ConfigurationError(
            "The configuration key 'storage_path' is empty.",
            fix="set storage_path to the folder or URI of the store.",
            key="storage_path",
        )
    if not isinstance(config.mode, StoreMode):
        raise ConfigurationError(
            f"The configuration key 'mode' has the value {config.mode!r}.",
            fix="set 'mode' to one of " + ", ".join(m.value for m in StoreMode) + ".",
            key="mode",
        )
    if not isinstance(config.online_backend, OnlineBackend):
        raise ConfigurationError(
            f"The configuration key 'online_backend' has the value {config.online_backend!r}.",
            fix="set 'online_backend' to one of " + ", ".join(b.value for b in OnlineBackend),
            key="online_backend",
        )
    non_negative = {
        "hybrid_threshold_rows": config.hybrid_threshold_rows,
        "duckdb_threshold_rows": config.duckdb_threshold_rows,
        "small_write_max_rows": config.small_write_max_rows,
        "max_retries": config.max_retries,
        "retry_backoff_ms": config.retry_backoff_ms,
        "metadata_cache_ttl_seconds": config.metadata_cache_ttl_seconds,
        "online_history_size": config.online_history_size,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigurationError(
                f"The configuration key '{key}' is {value}, but it cannot be negative.",
                fix=f"set '{key}' to 0 or more.",
                key=key,
            )
    positive = {
        "online_timeout_ms": config.online_timeout_ms,
        "spark_shuffle_partitions": config.spark_shuffle_partitions,
        "auto_materialize_after_reads": config.auto_materialize_after_reads,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigurationError(
                f"The configuration key '{key}' is {value}, but it must be positive.",
                fix=f"set '{key}' to 1 or more.",
                key=key,
            )
    if config.virtual_engine not in ("spark", "duckdb"):
        raise ConfigurationError(
            f"The configuration key 'virtual_engine' is {config.virtual_engine!r}.",
            fix="set it to 'spark' or 'duckdb'.",
            key="virtual_engine",
        )
    if config.query_timeout_seconds is not None and config.query_timeout_seconds <= 0:
        raise ConfigurationError(
            f"The configuration key 'query_timeout_seconds' is {config.query_timeout_seconds}.",
            fix="set it to a positive number of seconds, or leave it out for no limit.",
            key="query_timeout_seconds",
        )
    if config.retry_backoff_multiplier < 1.0:
        raise ConfigurationError(
            f"The configuration key 'retry_backoff_multiplier' is "
            f"{config.retry_backoff_multiplier}, but backoff must not shrink.",
            fix="set 'retry_backoff_multiplier' to 1.0 or more (2.0 doubles each wait).",
            key="retry_backoff_multiplier",
        )
    if config.online_backend is OnlineBackend.REDIS and not config.online_url:
        raise ConfigurationError(
            "The online backend is 'redis' but 'online_url' is not set.",
            fix="set online_url to the server, e.g. 'redis://localhost:6379/0'.",
            key="online_url",
        )
    if config.registry_engine not in REGISTRY_ENGINES:
        raise ConfigurationError(
            f"The configuration key 'registry_engine' is {config.registry_engine!r}.",
            fix="set 'registry_engine' to one of " + ", ".join(REGISTRY_ENGINES) + ".",
            key="registry_engine",
        )
    if config.spark_remote and not config.spark_remote.startswith("sc://"):
        raise ConfigurationError(
            f"The configuration key 'spark_remote' is {config.spark_remote!r}.",
            fix="set spark_remote to a Spark Connect URL such as 'sc://localhost:15002'.",
            key="spark_remote",
        )


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> FeatureStoreConfig:
    """Load `path`, or `conf/featurelake.yaml` under the cwd when no path is given."""
    return FeatureStoreConfig.from_yaml(path or DEFAULT_CONFIG_PATH, environ=environ)
