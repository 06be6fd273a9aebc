"""The interface every offline feature store implements, and what the stores share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.config import FeatureStoreConfig
from featurelake.plan.refs import resolve_refs
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.engines.spark.training import TrainingSet
    from featurelake.registry import RegistrationResult


class BaseFeatureStore(ABC):
    """Register groups, write them, and read latest or point-in-time values."""

    config: FeatureStoreConfig
    registry: Registry

    def __init__(
        self,
        config: FeatureStoreConfig,
        spark: SparkSession | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.config = config
        self._spark = spark
        self.registry = registry or Registry(config, spark)

    @property
    def spark(self) -> SparkSession:
        """The store's Spark session (the caller's, or the registry's, started on first use)."""
        if self._spark is None:
            self._spark = self.registry.spark
        return self._spark

    @property
    def started_spark(self) -> SparkSession | None:
        """The Spark session given or started so far (None: nothing has needed Spark yet)."""
        return self._spark or self.registry.started_spark

    def resolve_group(self, group: str | FeatureGroupSchema) -> FeatureGroupSchema:
        """A registered schema from a schema, `name` (latest version) or `name@version`."""
        if isinstance(group, FeatureGroupSchema):
            return self.registry.get_group(group.name, group.version)
        name, _, version = str(group).partition("@")
        return self.registry.get_group(name, int(version) if version else None)

    def resolve_refs(
        self, feature_refs: str | Sequence[str]
    ) -> dict[str, tuple[FeatureGroupSchema, list[str]]]:
        """Group -> (schema, features) for the refs; unknown groups/features raise first."""
        return resolve_refs(self.registry, feature_refs)

    @abstractmethod
    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult:
        """Register (or update compatibly) a feature group."""

    @abstractmethod
    def get_features(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
    ) -> DataFrame:
        """Latest value per entity of the referenced features, as of `point_in_time`."""

    get_training_set: Callable[..., TrainingSet]
    """`get_training_set(entity_df, feature_refs, *, ttl, timestamp_column, fill, name, ...)`:
    a training set and the manifest that rebuilds it (each store defines it)."""

    def get_historical_features(
        self,
        entity_df: Any,
        feature_refs: str | Sequence[str],
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
        **options: Any,
    ) -> DataFrame:
        """Point-in-time-correct features for every row of `entity_df` (Spark or pandas): the
        DataFrame of `get_training_set`, which also gives its manifest (`options` go to it,
        e.g. the hybrid store's `strategy`)."""
        training_set = self.get_training_set(
            entity_df,
            feature_refs,
            ttl=ttl,
            timestamp_column=timestamp_column,
            fill=fill,
            **options,
        )
        return training_set.df

    @abstractmethod
    def health_check(self) -> dict[str, Any]:
        """A dict with `healthy: bool` and what was checked."""
