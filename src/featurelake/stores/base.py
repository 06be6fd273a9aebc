"""The interface every offline feature store implements, and what the stores share.

Every part of one store is built on one `StoreContext`: its config, its registry and the
caller's Spark session (the router hands its own to the Gold and virtual parts it holds; a
store on a streaming micro-batch's session gets a copy with that session).

A store runs two kinds of `ReadRequest` (`plan.read_plan`): `latest` and `training_set`. The
keyword calls (`get_features`, `get_training_set`, `get_historical_features`) make the request
once, here, for every store.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from featurelake.config import FeatureStoreConfig
from featurelake.plan.read_plan import ReadRequest
from featurelake.plan.refs import resolve_bare_names, resolve_refs
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.engines.spark.training import TrainingSet
    from featurelake.plan.routing import StrategyArg
    from featurelake.registry import RegistrationResult

P = ParamSpec("P")
R = TypeVar("R")


def forwarded(
    part: str, method: Callable[Concatenate[Any, P], R]
) -> Callable[Concatenate[Any, P], R]:
    """A method that hands its call, unchanged, to `method` of the object at `part` (a dotted
    attribute path such as `"offline"` or `"hybrid.virtual"`): one signature and docstring
    for an owner's method and every object that passes it on."""
    name = method.__name__
    part_of = attrgetter(part)

    @functools.wraps(method)
    def forward(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = getattr(part_of(self), name)(*args, **kwargs)
        return result

    return forward


@dataclass(frozen=True)
class StoreContext:
    """What the parts of one store share: its config, its registry, and the Spark session the
    caller gave (None: the registry's, started on first use)."""

    config: FeatureStoreConfig
    registry: Registry
    given_spark: SparkSession | None = None

    @classmethod
    def of(
        cls,
        config: FeatureStoreConfig,
        spark: SparkSession | None = None,
        registry: Registry | None = None,
    ) -> StoreContext:
        """The context of a store on `config`, with the caller's session and registry if any."""
        return cls(config, registry or Registry(config, spark), spark)

    @property
    def spark(self) -> SparkSession:
        """The caller's Spark session, or the registry's (started on first use)."""
        return self.given_spark or self.registry.spark

    @property
    def started_spark(self) -> SparkSession | None:
        """The Spark session given or started so far (None: nothing has needed Spark yet)."""
        return self.given_spark or self.registry.started_spark

    def on_session(
        self, spark: SparkSession, config: FeatureStoreConfig | None = None
    ) -> StoreContext:
        """The same registry on another Spark session (and under `config`, if given)."""
        return replace(self, config=config or self.config, given_spark=spark)


class ContextSessions:
    """The Spark session views of an object that holds a `StoreContext`."""

    context: StoreContext

    @property
    def spark(self) -> SparkSession:
        """The store's Spark session (the caller's, or the registry's, started on first use)."""
        return self.context.spark

    @property
    def started_spark(self) -> SparkSession | None:
        """The Spark session given or started so far (None: nothing has needed Spark yet)."""
        return self.context.started_spark


class BaseFeatureStore(ContextSessions, ABC):
    """Register groups, write them, and read latest or point-in-time values."""

    config: FeatureStoreConfig
    registry: Registry

    def __init__(self, context: StoreContext) -> None:
        self.context = context
        self.config = context.config
        self.registry = context.registry
        self._lock = threading.Lock()
        """Guards the store's own caches and counters."""

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
    def latest(self, request: ReadRequest, entity_ids: Any = None) -> DataFrame:
        """Latest value per entity of a latest-value `request`'s features."""

    @abstractmethod
    def training_set(
        self, entity_df: Any, request: ReadRequest, *, name: str | None = None
    ) -> TrainingSet:
        """The training set of a point-in-time `request` and the manifest that rebuilds it
        (kept under `name`)."""

    def get_features(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        *,
        as_of_version: int | None = None,
        as_of_timestamp: datetime | str | None = None,
        **options: Any,
    ) -> DataFrame:
        """`latest` of the referenced features as of `point_in_time` (a materialized store also
        reads its Gold tables at a past Delta version or time; `options` go to `latest`, e.g.
        the hybrid store's `strategy`)."""
        request = ReadRequest.latest(
            feature_refs,
            point_in_time,
            as_of_version=as_of_version,
            as_of_timestamp=as_of_timestamp,
        )
        return self.latest(request, entity_ids, **options)

    def get_training_set(
        self,
        entity_df: Any,
        feature_refs: str | Sequence[str],
        *,
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
        name: str | None = None,
        strategy: StrategyArg = None,
    ) -> TrainingSet:
        """A point-in-time training set of the referenced features (`group.feature`, or a bare
        name one registered group has) for the rows of `entity_df` (Spark or pandas), and its
        manifest, kept under `name` to `rebuild`. `strategy` routes each group between Gold and
        its virtual query where the store routes (the FeatureStore does in every mode)."""
        request = ReadRequest.historical(
            resolve_bare_names(self.registry, feature_refs), ttl, timestamp_column, fill
        )
        routing = {} if strategy is None else {"strategy": strategy}  # for stores that route
        return self.training_set(entity_df, request, name=name, **routing)

    def get_historical_features(
        self, entity_df: Any, feature_refs: str | Sequence[str], **options: Any
    ) -> DataFrame:
        """The DataFrame of `get_training_set(entity_df, feature_refs, **options)`."""
        return self.get_training_set(entity_df, feature_refs, **options).df

    @abstractmethod
    def health_check(self) -> dict[str, Any]:
        """A dict with `healthy: bool` and what was checked."""
