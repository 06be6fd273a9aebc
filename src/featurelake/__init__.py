"""featurelake: a feature platform for the lakehouse, on Spark and Delta Lake.

The public API is re-exported here and imported lazily, so `import featurelake` starts no Spark
session and imports no engine until a name that needs one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from loguru import logger

logger.disable("featurelake")

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "FeatureStoreConfig": "featurelake.config",
    "StoreMode": "featurelake.config",
    "OnlineBackend": "featurelake.config",
    "load_config": "featurelake.config",
    "get_spark": "featurelake.session",
    "enable_logging": "featurelake.logs",
    "FeatureStoreError": "featurelake.errors",
    "ConfigurationError": "featurelake.errors",
    "SchemaValidationError": "featurelake.errors",
    "FeatureNotFoundError": "featurelake.errors",
    "FeatureGroupNotFoundError": "featurelake.errors",
    "MaterializationError": "featurelake.errors",
    "ConcurrentWriteError": "featurelake.errors",
    "VirtualizationQueryError": "featurelake.errors",
    "RegistryError": "featurelake.errors",
    "PointInTimeError": "featurelake.errors",
    "OnlineStoreError": "featurelake.errors",
    "OnlineStoreUnavailableError": "featurelake.errors",
    "UnsupportedOperationError": "featurelake.errors",
    "DeltaTableNotReadableError": "featurelake.errors",
    "JarDownloadError": "featurelake.errors",
    "ArgumentConflictError": "featurelake.errors",
    "AmbiguousFeatureError": "featurelake.errors",
    "FeatureStoreException": "featurelake.errors",
    "FeatureMaterializationError": "featurelake.errors",
    "FeatureRegistryError": "featurelake.errors",
    "MetadataError": "featurelake.errors",
    "VirtualizationError": "featurelake.errors",
    "FeatureStoreMode": "featurelake.config",
    "HealthResult": "featurelake.serving.health",
    "FeatureValue": "featurelake.online",
    "DataType": "featurelake.schema",
    "FeatureType": "featurelake.schema",
    "FeatureSchema": "featurelake.schema",
    "FeatureGroupSchema": "featurelake.schema",
    "load_groups": "featurelake.schema",
    "Aggregation": "featurelake.schema",
    "CompositeFeature": "featurelake.schema",
    "Registry": "featurelake.registry",
    "Lineage": "featurelake.registry",
    "WriteResult": "featurelake.stores.materialized",
    "TrainingSet": "featurelake.engines.spark.training",
    "TrainingSetManifest": "featurelake.engines.spark.training",
    "create_online_store": "featurelake.online",
    "FeatureVector": "featurelake.online",
    "FeatureStore": "featurelake.serving.store",
    "FeatureService": "featurelake.serving",
    "FeatureTransform": "featurelake.serving",
    "MaterializationSource": "featurelake.scheduling",
    "materialize_from_source": "featurelake.scheduling",
    "start_stream": "featurelake.scheduling",
    "Scheduler": "featurelake.scheduling",
}

__all__ = sorted([*_EXPORTS, "__version__"])

# Store classes that are now internal parts of FeatureStore (one object in every mode).
_PARTS = ("MaterializedFeatureStore", "HybridFeatureStore", "VirtualizedFeatureStore")


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None and (name in _PARTS or name == "DuckDBFeatureReader"):
        raise AttributeError(
            f"featurelake.{name} is not public API any more: use featurelake.FeatureStore(config, "
            "spark) in every mode (the mode sets the read strategy; get_features(..., "
            "to_pandas=True, engine='duckdb') reads on DuckDB)."
        )
    if module is None:
        raise AttributeError(f"module 'featurelake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
