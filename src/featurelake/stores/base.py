"""The interface every offline feature store implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.registry import RegistrationResult


class BaseFeatureStore(ABC):
    """Register groups, write them, and read latest or point-in-time values."""

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

    @abstractmethod
    def get_historical_features(
        self,
        entity_df: Any,
        feature_refs: str | Sequence[str],
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
    ) -> DataFrame:
        """Point-in-time-correct values for every row of `entity_df`."""

    @abstractmethod
    def health_check(self) -> dict[str, Any]:
        """A dict with `healthy: bool` and what was checked."""
