"""`FeatureStore`: the one object users hold. It validates arguments and delegates.

Offline calls go to a `MaterializedFeatureStore` (`.offline`), online reads and syncs to the
online store built from the config (`.online`), services to `FeatureService` (`.services`).
Both stores are created on first use, so a process that only serves never starts Spark until
it syncs or falls back to the offline store. The pandas reads (`get_features_pandas`,
`get_historical_features_pandas`) answer small requests on DuckDB over the same Delta tables,
also without a Spark session (see `offline.engines`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.config import FeatureStoreConfig, StoreMode
from featurelake.errors import ConfigurationError, OnlineStoreUnavailableError
from featurelake.online import (
    FeatureVector,
    InMemoryOnlineStore,
    OnlineStore,
    ReadPlan,
    SyncResult,
    create_online_store,
    sync_to_online,
    vectors_to_pandas,
)
from featurelake.online.values import entity_dict, entity_id, entity_list, now_micros, to_micros
from featurelake.registry import RegistrationResult, Registry
from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.offline.engines import EngineArg
    from featurelake.offline.hybrid import HybridFeatureStore, RoutingDecision
    from featurelake.offline.materialized import MaterializedFeatureStore, WriteResult
    from featurelake.serving.service import FeatureService


class FeatureStore:
    """Offline and online features of one store, behind one object."""

    def __init__(
        self,
        config: FeatureStoreConfig,
        spark: SparkSession | None = None,
        *,
        registry: Registry | None = None,
        online: OnlineStore | None = None,
    ) -> None:
        self.config = config
        self._spark = spark
        self.registry = registry or Registry(config, spark)
        self._offline: MaterializedFeatureStore | None = None
        self._hybrid: HybridFeatureStore | None = None
        self._online = online
        self._services: FeatureService | None = None
        self._lock = threading.RLock()

    # -- the parts -----------------------------------------------------------------------------

    @property
    def offline(self) -> MaterializedFeatureStore:
        """The materialized (Gold Delta) store; with `sync_to_online`, writes also sync."""
        with self._lock:
            if self._offline is None:
                from featurelake.offline.materialized import MaterializedFeatureStore
                from featurelake.quality import attach_configured_quality

                if self.config.mode in (StoreMode.HYBRID, StoreMode.VIRTUALIZED):
                    offline = self.hybrid.materialized
                else:
                    offline = MaterializedFeatureStore(
                        self.config, self._spark, registry=self.registry
                    )
                attach_configured_quality(offline)
                if self.config.sync_to_online:
                    if self.config.enable_online_store or self._online is not None:
                        offline.add_write_listener(self._sync_written)
                    else:
                        logger.warning(
                            "sync_to_online is true but enable_online_store is false: writes "
                            "are not synced online"
                        )
                self._offline = offline
            return self._offline

    @property
    def hybrid(self) -> HybridFeatureStore:
        """The router over Gold and virtual groups (reads go here in HYBRID/VIRTUALIZED mode)."""
        with self._lock:
            if self._hybrid is None:
                from featurelake.offline.hybrid import HybridFeatureStore

                self._hybrid = HybridFeatureStore(self.config, self._spark, self.registry)
            return self._hybrid

    @property
    def reader(self) -> MaterializedFeatureStore | HybridFeatureStore:
        """Where offline reads go: the hybrid router in HYBRID/VIRTUALIZED mode, else Gold."""
        if self.config.mode in (StoreMode.HYBRID, StoreMode.VIRTUALIZED):
            return self.hybrid
        return self.offline

    @property
    def spark_session(self) -> SparkSession | None:
        """The Spark session the store uses, or None while nothing has needed one yet."""
        return self._spark or self.registry.started_spark

    @property
    def online(self) -> OnlineStore:
        """The online store named by `online_backend` (needs `enable_online_store: true`)."""
        with self._lock:
            if self._online is None:
                if not self.config.enable_online_store:
                    raise ConfigurationError(
                        "The online store is not enabled for this feature store.",
                        fix="set enable_online_store: true (and online_backend / online_url) in "
                        "the config.",
                        key="enable_online_store",
                    )
                self._online = create_online_store(self.config, self.registry)
            return self._online

    @property
    def services(self) -> FeatureService:
        """Feature services (named feature sets with transforms) of this store."""
        with self._lock:
            if self._services is None:
                from featurelake.serving.service import FeatureService

                self._services = FeatureService(self)
            return self._services

    # -- offline, delegated --------------------------------------------------------------------

    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult:
        return self.offline.register_features(group_schema)

    def write_features(
        self, group: str | FeatureGroupSchema, df: Any, mode: str = "append", **kwargs: Any
    ) -> WriteResult:
        return self.offline.write_features(group, df, mode, **kwargs)

    def get_features(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        **kwargs: Any,
    ) -> DataFrame:
        return self.reader.get_features(feature_refs, entity_ids, point_in_time, **kwargs)

    def get_historical_features(
        self,
        entity_df: Any,
        feature_refs: str | Sequence[str],
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
    ) -> DataFrame:
        return self.reader.get_historical_features(
            entity_df, feature_refs, ttl=ttl, timestamp_column=timestamp_column, fill=fill
        )

    # -- pandas reads (Spark-free when DuckDB serves) -------------------------------------------

    def get_features_pandas(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        *,
        engine: EngineArg = "auto",
    ) -> pd.DataFrame:
        """The latest value per entity as a pandas DataFrame (the rows `get_features` gives).

        With `engine="auto"` a request estimated under `duckdb_threshold_rows` rows runs on
        DuckDB over the same Delta tables, and no Spark session is started; larger ones run on
        Spark. `"spark"` / `"duckdb"` force the engine; `explain` tells which one and why.
        """
        return self.hybrid.get_features_pandas(
            feature_refs, entity_ids, point_in_time, strategy=self._strategy, engine=engine
        )

    def get_historical_features_pandas(
        self,
        entity_df: pd.DataFrame,
        feature_refs: str | Sequence[str],
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
        *,
        engine: EngineArg = "auto",
    ) -> pd.DataFrame:
        """Point-in-time-correct features for a pandas `entity_df`, as pandas (the rows
        `get_historical_features` gives), Spark-free when DuckDB serves it (see
        `get_features_pandas`)."""
        return self.hybrid.get_historical_features_pandas(
            entity_df,
            feature_refs,
            ttl=ttl,
            timestamp_column=timestamp_column,
            fill=fill,
            strategy=self._strategy,
            engine=engine,
        )

    def explain(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        **options: Any,
    ) -> dict[str, RoutingDecision]:
        """How each group of a read is served (Gold table or virtual query) and on which
        engine a pandas read runs, with the numbers behind it; reads and writes nothing."""
        options.setdefault("strategy", self._strategy)
        return self.hybrid.explain(feature_refs, entity_ids, point_in_time, **options)

    @property
    def _strategy(self) -> str | None:
        """MATERIALIZED (and ONLINE) stores read Gold tables only; the router chooses else."""
        if self.config.mode in (StoreMode.HYBRID, StoreMode.VIRTUALIZED):
            return None
        return "materialized"

    def materialize_aggregations(
        self, group: str | FeatureGroupSchema, as_of: datetime | None = None
    ) -> WriteResult:
        """Compute an aggregation group's window values as of `as_of` (default now) into its
        Gold table; with `sync_to_online` they go online too (the age is the time since
        `as_of`)."""
        return self.offline.materialize_aggregations(group, as_of)

    # -- online --------------------------------------------------------------------------------

    def get_online_features(
        self,
        feature_refs: str | Sequence[str],
        entity_keys: Any,
        *,
        defaults: Mapping[str, Any] | None = None,
        as_frame: bool = False,
        fallback_to_offline: bool = False,
    ) -> list[FeatureVector] | pd.DataFrame:
        """The latest values per entity: one `FeatureVector` each, or a pandas DataFrame.

        When the online store does not answer within `online_timeout_ms`, an
        `OnlineStoreUnavailableError` is raised, unless `fallback_to_offline=True`, which
        reads the latest values from the Gold tables instead (on DuckDB when installed and the
        read is small, else Spark; vectors say `source == "offline"`).
        """
        try:
            vectors = self.online.get(feature_refs, entity_keys, defaults=defaults)
        except OnlineStoreUnavailableError as error:
            if not fallback_to_offline:
                raise
            logger.warning("online store unavailable ({}); reading the offline store", error)
            vectors = self._offline_vectors(feature_refs, entity_keys, defaults)
        return vectors_to_pandas(vectors) if as_frame else vectors

    def sync_to_online(
        self,
        group: str | FeatureGroupSchema,
        since: int | datetime | None = None,
        *,
        full: bool = False,
    ) -> SyncResult:
        """Push the latest values of a group version from its Gold table to the online store.

        Incremental from the last synced Delta version (Change Data Feed) unless `full`;
        `since` starts from a given Delta version or commit time instead.
        """
        return sync_to_online(
            self.online, self.registry, group, since, full=full, spark=self._spark
        )

    def online_plan(self, feature_refs: str | Sequence[str]) -> ReadPlan:
        """How `feature_refs` are read online (resolves them against the registry)."""
        if self._online is not None or self.config.enable_online_store:
            return self.online.plan(feature_refs)
        return InMemoryOnlineStore(resolver=self.registry.get_group).plan(feature_refs)

    def _sync_written(self, result: WriteResult) -> None:
        """Write listener: sync the written group. The offline write has committed, so a
        failure here is logged, not raised; the next sync catches up from the watermark."""
        try:
            self.sync_to_online(f"{result.group}@{result.version}")
        except Exception as error:
            logger.warning(
                "syncing {}@{} online after a write failed ({}); run sync_to_online to catch up",
                result.group,
                result.version,
                error,
            )

    def _offline_vectors(
        self,
        feature_refs: str | Sequence[str],
        entity_keys: Any,
        defaults: Mapping[str, Any] | None,
    ) -> list[FeatureVector]:
        """Vectors built from the offline store's latest values (the explicit fallback)."""
        plan = self.online.plan(feature_refs)
        if plan.composites is not None:
            from featurelake.online.composites import compose_vectors

            return compose_vectors(
                plan.composites,
                lambda refs: self._offline_vectors(refs, entity_keys, None),
                defaults,
            )
        entities = entity_list(entity_keys)
        width = len(plan.names)
        values: list[list[Any]] = [[None] * width for _ in entities]
        events: list[list[int | None]] = [[None] * width for _ in entities]
        for group in plan.groups:
            schema = group.schema
            keys = schema.entity_keys
            refs = [f"{schema.name}@{schema.version}.{f}" for f in group.features]
            ids = [entity_dict(keys, e) for e in entities]
            frame = self.hybrid.get_features_pandas(  # DuckDB for small reads: no Spark
                refs,
                [i[keys[0]] for i in ids] if len(keys) == 1 else ids,
                strategy="materialized",
            )
            found: dict[str, dict[Any, Any]] = {}
            for row in frame.to_dict("records"):
                found[entity_id(keys, row)] = row
            for i, entity in enumerate(entities):
                latest = found.get(entity_id(keys, entity))
                if latest is None:
                    continue
                event = latest.get(schema.timestamp_key)
                micros = None if event is None else to_micros(event)
                for feature, position in zip(group.features, group.positions, strict=True):
                    value = latest.get(feature)
                    values[i][position] = None if _is_null(value) else _plain(value)
                    events[i][position] = micros
        fill = {plan.index[k]: v for k, v in (defaults or {}).items() if k in plan.index}
        now = now_micros()
        vectors = []
        for i, entity in enumerate(entities):
            for position, value in fill.items():
                if events[i][position] is None:
                    values[i][position] = value
            keys_of: dict[str, Any] = {}
            for group in plan.groups:
                keys_of.update(entity_dict(group.schema.entity_keys, entity))
            vectors.append(
                FeatureVector(
                    keys_of, plan.names, plan.index, values[i], events[i], now, source="offline"
                )
            )
        return vectors

    # -- health and lifecycle ------------------------------------------------------------------

    def health_check(self) -> dict[str, Any]:
        """Offline and (when enabled) online health, with `healthy` for both together."""
        checks: dict[str, Any] = {"offline": self.offline.health_check()}
        if self.config.enable_online_store or self._online is not None:
            checks["online"] = self.online.health_check()
        checks["healthy"] = all(
            part.get("healthy", False) for part in checks.values() if isinstance(part, dict)
        )
        return checks

    def close(self) -> None:
        """Commit pending router metrics; close the online store's connections."""
        with self._lock:
            if self._hybrid is not None:
                self._hybrid.flush_metrics()
            if self._online is not None:
                self._online.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, list | dict) else False
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """pandas / numpy values as plain Python ones."""
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if type(value).__module__ == "numpy":
        return value.tolist() if hasattr(value, "tolist") else value
    return value
