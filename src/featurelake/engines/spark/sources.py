"""Where the Spark engine's reads take a group's rows from: a store's Gold tables or virtual
queries (`FeatureFrameSource`), and the record of each Delta table read (`TableRead`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.config import FeatureStoreConfig
    from featurelake.registry import Registry


@dataclass(frozen=True)
class TableRead:
    """One Gold table read by a training set, at one Delta version."""

    group: str
    group_version: int
    delta_version: int
    table: str


class FeatureFrameSource(Protocol):
    """What a training set needs from a store: refs resolved, and each group's rows."""

    config: FeatureStoreConfig
    registry: Registry

    @property
    def spark(self) -> SparkSession: ...

    def resolve_refs(
        self, feature_refs: str | Sequence[str]
    ) -> dict[str, tuple[FeatureGroupSchema, list[str]]]: ...

    def group_frame(
        self, schema: FeatureGroupSchema, features: Sequence[str], *, version: int | None = None
    ) -> tuple[DataFrame, TableRead | None]:
        """Keys, event time, `features` and `_ingested_at` of a group; the Delta read behind
        them (None for a virtual group). `version` pins a Delta version (a rebuild)."""
        ...
