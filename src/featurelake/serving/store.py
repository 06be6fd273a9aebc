"""`FeatureStore`: the one object users hold. It validates arguments and delegates.

Offline calls go to a `MaterializedFeatureStore` (`.offline`), online reads and syncs to the
online store built from the config (`.online`), services to `FeatureService` (`.services`).
Both stores are created on first use, so a process that only serves never starts Spark until
it syncs or falls back to the offline store. The pandas reads (`get_features_pandas`,
`get_historical_features_pandas`) answer small requests on DuckDB over the same Delta tables,
also without a Spark session (see `plan.engine_choice`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.config import FeatureStoreConfig, StoreMode
from featurelake.entities import is_frame, normalize_entity_ids
from featurelake.errors import (
    ArgumentConflictError,
    ConfigurationError,
    FeatureStoreError,
    OnlineStoreUnavailableError,
)
from featurelake.online import (
    FeatureValue,
    FeatureVector,
    InMemoryOnlineStore,
    OnlinePlan,
    OnlineStore,
    SyncResult,
    create_online_store,
    sync_to_online,
    vectors_to_pandas,
)
from featurelake.online.values import entity_dict, entity_id, entity_list, now_micros, to_micros
from featurelake.plan.engine_choice import Engine, EngineDecision
from featurelake.plan.read_plan import ReadRequest
from featurelake.plan.refs import resolve_bare_names
from featurelake.registry import Lineage, RegistrationResult, Registry, TableLocation
from featurelake.schema import FeatureGroupSchema, FeatureSchema, parse_refs
from featurelake.serving.health import HealthResult
from featurelake.serving.metadata import StoreMetadata
from featurelake.serving.shapes import alias, time_span
from featurelake.stores.base import ContextSessions, StoreContext, forwarded
from featurelake.stores.hybrid import HybridFeatureStore
from featurelake.stores.materialized import MaterializedFeatureStore

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from pyspark.sql import SparkSession

    from featurelake.plan.engine_choice import EngineArg
    from featurelake.plan.read_plan import ReadPlan
    from featurelake.plan.routing import StrategyArg
    from featurelake.quality import CheckReport, DriftReport, GroupStatistics
    from featurelake.serving.service import FeatureService
    from featurelake.stores.materialized import WriteResult


class FeatureStore(ContextSessions):
    """Offline and online features of one store, behind one object."""

    def __init__(
        self,
        config: FeatureStoreConfig | Mapping[str, Any] | None = None,
        spark: SparkSession | None = None,
        *,
        registry: Registry | None = None,
        online: OnlineStore | None = None,
        storage_path: str | None = None,
        query_executor: Any = None,
    ) -> None:
        """`config` is a `FeatureStoreConfig` or a mapping of its keys; `storage_path=` alone
        makes a default config. `query_executor` ("spark", "duckdb" or a `QueryExecutor`)
        runs virtual queries defined without `engine=`."""
        config = store_config(config, storage_path)
        self._executor = query_executor
        if isinstance(query_executor, str):
            config = config.replace(virtual_engine=query_executor)
            self._executor = None
        self.config = config
        self.context = StoreContext.of(config, spark, registry)
        self.registry = self.context.registry
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
                from featurelake.quality import attach_configured_quality

                offline = self.hybrid.materialized
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
                self._hybrid = HybridFeatureStore(
                    self.context,
                    mode=self.config.mode,
                    executor=self._executor or self.config.virtual_engine,
                )
            return self._hybrid

    spark_session = ContextSessions.started_spark
    """The Spark session the store uses, or None while nothing has needed one yet."""

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
    def metadata(self) -> StoreMetadata:
        """Groups, features, last updates and feature lineage (`store.metadata.list_features`)."""
        return StoreMetadata(self)

    @property
    def services(self) -> FeatureService:
        """Feature services (named feature sets with transforms) of this store."""
        with self._lock:
            if self._services is None:
                from featurelake.serving.service import FeatureService

                self._services = FeatureService(self)
            return self._services

    # -- groups and writes ----------------------------------------------------------------------

    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult:
        """Register a group version (created, unchanged, or updated in place when compatible)."""
        self.offline  # noqa: B018 - the Gold part, with its quality hooks and online sync
        return self.hybrid.register_features(group_schema)

    def register_feature(self, definition: Any) -> None:
        """Refused: featurelake registers features in groups (keys, event time, versions)."""
        name = getattr(definition, "name", definition)
        raise ArgumentConflictError(
            f"register_feature({name!r}): featurelake registers features in groups, which give "
            "them entity keys, an event time and a version.",
            fix=f"store.register_features(FeatureGroupSchema('<group>', ['<entity key>'], "
            f"[{name!r} definition])).",
        )

    def on_session(
        self, spark: SparkSession, config: FeatureStoreConfig | None = None
    ) -> MaterializedFeatureStore:
        """The Gold part of this store on another Spark session (a streaming micro-batch's),
        with the same registry, quality hooks and online sync (under `config` if given)."""
        return self.offline.on_session(spark, config)

    def resolve_group(self, group: str | FeatureGroupSchema) -> FeatureGroupSchema:
        """A registered schema from a schema, `name` (latest version) or `name@version`."""
        return self.offline.resolve_group(group)

    def list_features(self, group: str | None = None) -> list[FeatureSchema]:
        """The feature definitions of a group, or of every registered group (latest
        versions)."""
        groups = [self.resolve_group(group)] if group else self.registry.list_groups()
        return [feature for schema in groups for feature in schema.features]

    def get_feature(self, group: str, feature: str | None = None) -> FeatureSchema:
        """One feature's definition: `get_feature("group", "age")`, `get_feature("group.age")`
        or a bare name one registered group has (`get_feature("age")`)."""
        ref = f"{group}.{feature}" if feature is not None else group
        parsed = parse_refs(self.feature_refs(ref))[0]
        schema = self.resolve_group(
            parsed.group if parsed.version is None else f"{parsed.group}@{parsed.version}"
        )
        return schema.feature(parsed.feature)

    def location(self, group: str | FeatureGroupSchema) -> TableLocation:
        """Where a group version's Gold table lives."""
        return self.offline.location(group)

    def write_features(
        self,
        group: str | FeatureGroupSchema | None = None,
        df: Any = None,
        mode: str = "append",
        *,
        lineage: Lineage | None = None,
        backfill: bool = False,
        feature_group: str | FeatureGroupSchema | None = None,
        data: Any = None,
    ) -> WriteResult:
        """Validate `df` and write it to the group's Gold table: `append`, `overwrite` or
        `merge` (upsert on keys + event time). A refused batch leaves the table unchanged.

        `backfill=True` replaces exactly the span of event times `df` covers (earliest to
        latest, as `backfill(group, df, start, end)`) instead. `feature_group=` and `data=`
        are accepted for `group` and `df`."""
        call = "write_features"
        group = alias(group, feature_group, ours_name="group", seed_name="feature_group", call=call)
        df = alias(df, data, ours_name="df", seed_name="data", call="write_features")
        if backfill:
            if str(mode).lower() == "merge":
                raise ArgumentConflictError(
                    "write_features(backfill=True) replaces the span of the data's event times, "
                    "which a merge does not do.",
                    fix="drop mode='merge' for a backfill, or drop backfill=True to upsert.",
                )
            schema = self.resolve_group(group)
            start, end = time_span(df, schema.timestamp_key)
            return self.offline.backfill(schema, df, start, end, lineage=lineage)
        return self.offline.write_features(group, df, mode, lineage=lineage)

    apply_changes = forwarded("offline", MaterializedFeatureStore.apply_changes)
    backfill = forwarded("offline", MaterializedFeatureStore.backfill)
    define_virtual_features = forwarded("hybrid", HybridFeatureStore.define_virtual_features)
    materialize = forwarded("hybrid", HybridFeatureStore.materialize)

    # -- history and time travel ---------------------------------------------------------------

    read_table = forwarded("offline", MaterializedFeatureStore.read_table)
    history = forwarded("offline", MaterializedFeatureStore.history)
    restore = forwarded("offline", MaterializedFeatureStore.restore)

    # -- reads -----------------------------------------------------------------------------------

    def get_features(
        self,
        feature_refs: str | Sequence[str] | None = None,
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        *,
        as_of_version: int | None = None,
        as_of_timestamp: datetime | str | None = None,
        strategy: StrategyArg = None,
        engine: EngineArg = None,
        to_pandas: bool = False,
        feature_names: str | Sequence[str] | None = None,
    ) -> Any:
        """The latest value per entity of `feature_refs` (as of `point_in_time`).

        The same call in every mode: the mode only sets the default `strategy` (see
        `FeatureStoreConfig.mode`). `entity_ids`: values, tuples or dicts, a dict of columns,
        or a pandas / Spark DataFrame of keys. Pin a Gold table's Delta version with
        `as_of_version` / `as_of_timestamp`, an engine with `engine` ("spark", "duckdb",
        "auto"). `to_pandas=True` returns pandas (DuckDB answers small reads without Spark);
        else a Spark DataFrame. `feature_names=` is accepted for `feature_refs`, and a bare
        feature name (`"age"`) reads `group.age` when exactly one registered group has it.
        """
        feature_refs = self.feature_refs(
            alias(
                feature_refs,
                feature_names,
                ours_name="feature_refs",
                seed_name="feature_names",
                call="get_features",
            )
        )
        ids = normalize_entity_ids(entity_ids)
        request = ReadRequest.latest(
            feature_refs,
            point_in_time,
            as_of_version=as_of_version,
            as_of_timestamp=as_of_timestamp,
        )
        if request.pinned:
            _only_gold(strategy, engine)
            frame = self.offline.latest(request, ids)
            return frame.toPandas() if to_pandas else frame
        if self._reads_online(ids, point_in_time, strategy, engine):
            return self._online_frame(feature_refs, ids, to_pandas)
        if to_pandas or engine not in (None, "spark"):
            result = self.hybrid.latest_pandas(
                request, ids, strategy=strategy, engine=engine or "auto"
            )
            return result if to_pandas else self.spark.createDataFrame(result)
        return self.hybrid.latest(request, ids, strategy=strategy)

    def get_historical_features(
        self,
        entity_df: Any = None,
        feature_refs: str | Sequence[str] | None = None,
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
        *,
        strategy: StrategyArg = None,
        engine: EngineArg = None,
        to_pandas: bool = False,
        entities: Any = None,
        features: str | Sequence[str] | None = None,
    ) -> Any:
        """Point-in-time-correct features for every row of `entity_df` (Spark or pandas):
        per group the latest event with `event_ts <= t` within the ttl, ties broken by
        `_ingested_at`. `engine`, `strategy` and `to_pandas` as for `get_features`;
        `entities=` / `features=` are accepted for `entity_df` / `feature_refs`, and bare
        feature names as in `get_features`."""
        call = "get_historical_features"
        entity_df = alias(
            entity_df, entities, ours_name="entity_df", seed_name="entities", call=call
        )
        feature_refs = self.feature_refs(
            alias(feature_refs, features, ours_name="feature_refs", seed_name="features", call=call)
        )
        request = ReadRequest.historical(feature_refs, ttl, timestamp_column, fill)
        if to_pandas or engine not in (None, "spark"):
            frame = entity_df.toPandas() if _is_spark(entity_df) else entity_df
            result = self.hybrid.historical_pandas(
                frame, request, strategy=strategy, engine=engine or "auto"
            )
            return result if to_pandas else self.spark.createDataFrame(result)
        return self.hybrid.training_set(entity_df, request, strategy=strategy).df

    def feature_refs(self, feature_refs: str | Sequence[str]) -> str | list[str]:
        """`feature_refs` with bare feature names resolved to `group.feature` (the one
        registered group that has each; AmbiguousFeatureError lists them when several do)."""
        return resolve_bare_names(self.registry, feature_refs)

    get_training_set = forwarded("hybrid", HybridFeatureStore.get_training_set)
    rebuild = forwarded("hybrid", HybridFeatureStore.rebuild)

    # -- pandas reads (kept for existing code: get_features(..., to_pandas=True)) ---------------

    def get_features_pandas(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        *,
        engine: EngineArg = "auto",
    ) -> pd.DataFrame:
        """`get_features(..., to_pandas=True)`."""
        result: pd.DataFrame = self.get_features(
            feature_refs, entity_ids, point_in_time, engine=engine, to_pandas=True
        )
        return result

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
        """`get_historical_features(..., to_pandas=True)`."""
        result: pd.DataFrame = self.get_historical_features(
            entity_df, feature_refs, ttl, timestamp_column, fill, engine=engine, to_pandas=True
        )
        return result

    def explain(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        **options: Any,
    ) -> ReadPlan:
        """The plan of a read: its groups and versions, output columns, how each group is
        served (Gold table or virtual query, by the store's mode) and on which engine a pandas
        read runs, with the numbers behind each; reads and writes nothing. The plan is also a
        mapping of group name to its decision (`explain(...)["orders"].reason`)."""
        ids = normalize_entity_ids(entity_ids)
        if not self._reads_online(
            ids, point_in_time, options.get("strategy"), options.get("engine")
        ):
            return self.hybrid.explain(feature_refs, ids, point_in_time, **options)
        options.pop("engine", None)
        plan = self.hybrid.explain(feature_refs, ids, point_in_time, **options)
        online = EngineDecision(
            Engine.ONLINE,
            "mode 'online': latest values of given entities are served by the online store "
            "(a missing entity falls back to the offline read below)",
            None,
            0,
        )
        return plan.with_decisions(plan.decisions, online)

    materialize_aggregations = forwarded(
        "offline", MaterializedFeatureStore.materialize_aggregations
    )
    backfill_aggregations = forwarded("offline", MaterializedFeatureStore.backfill_aggregations)

    # -- quality ---------------------------------------------------------------------------------

    def statistics(
        self, group: str | FeatureGroupSchema, *, delta_version: int | None = None
    ) -> GroupStatistics:
        """Statistics of the group's Gold table (newest version by default), recorded."""
        from featurelake.quality import statistics

        return statistics(self.registry, group, delta_version=delta_version, spark=self.spark)

    def check(
        self, group: str | FeatureGroupSchema, *, delta_version: int | None = None
    ) -> CheckReport:
        """The group's quality rules over its Gold table, recorded."""
        from featurelake.quality import check

        return check(self.registry, group, delta_version=delta_version, spark=self.spark)

    def drift(self, group: str | FeatureGroupSchema, *, reference: Any = None) -> DriftReport:
        """Drift of the group's newest statistics against `reference` (default: the previous
        version's), recorded."""
        from featurelake.quality import drift

        return drift(self.registry, group, reference=reference, spark=self.spark)

    def report(self, group: str | FeatureGroupSchema, out_dir: str | Path) -> Path:
        """Write the group's HTML quality report (and its JSON) into `out_dir`."""
        from featurelake.quality.report import write_report

        return write_report(self.offline, group, out_dir, spark=self.spark)

    # -- how reads are served ----------------------------------------------------------------------

    def _reads_online(
        self, ids: Any, point_in_time: datetime | None, strategy: Any, engine: Any
    ) -> bool:
        """ONLINE mode serves latest-value reads of given entities from the online store."""
        return (
            self.config.mode is StoreMode.ONLINE
            and ids is not None
            and point_in_time is None
            and strategy is None
            and engine in (None, "online")
        )

    def _online_frame(self, feature_refs: str | Sequence[str], ids: Any, to_pandas: bool) -> Any:
        vectors = self.get_online_features(feature_refs, ids, fallback_to_offline=True)
        assert isinstance(vectors, list)
        frame = vectors_to_pandas(vectors)
        return frame if to_pandas else self.spark.createDataFrame(frame)

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
        entity_keys = normalize_entity_ids(entity_keys)
        feature_refs = self.feature_refs(feature_refs)
        try:
            vectors = self.online.get(feature_refs, entity_keys, defaults=defaults)
        except OnlineStoreUnavailableError as error:
            if not fallback_to_offline:
                raise
            logger.warning("online store unavailable ({}); reading the offline store", error)
            vectors = self._offline_vectors(feature_refs, entity_keys, defaults)
        return vectors_to_pandas(vectors) if as_frame else vectors

    def set_value(
        self, feature: str, entity_id: Any, value: Any, *, event_time: datetime | None = None
    ) -> bool:
        """Write one online feature value (`group.feature` or a bare name) of one entity; its
        event time is now unless given. Each accepted write is the feature's next version
        (kept with `online_history_size`); False when a newer event is stored."""
        ref = self._one_ref(feature)
        return self.online.set_value(ref, entity_id, value, event_time=event_time)

    def get_value(self, feature: str, entity_id: Any) -> FeatureValue | None:
        """The current online value of one feature of one entity, with its version, event
        time (`timestamp`) and age (`age_seconds`); None when it has none."""
        return self.online.get_value(self._one_ref(feature), entity_id)

    def get_value_history(
        self, feature: str, entity_id: Any, limit: int | None = None
    ) -> list[FeatureValue]:
        """The last `online_history_size` versions of one online value, newest first."""
        return self.online.get_value_history(self._one_ref(feature), entity_id, limit)

    def delete_value(self, feature: str, entity_id: Any) -> bool:
        """Remove one online feature value of one entity (and its history)."""
        return self.online.delete_value(self._one_ref(feature), entity_id)

    def get_vector(
        self, entity_id: Any, feature_names: str | Sequence[str] | None = None
    ) -> FeatureVector:
        """One entity's online `FeatureVector` of `feature_names` (refs or bare names; every
        feature of the one group of a single-group store when None); features without a value
        take their `default_value`."""
        if feature_names is None:
            groups = self.registry.list_groups()
            if len(groups) != 1:
                raise ArgumentConflictError(
                    f"get_vector() without feature names reads the one registered group, and "
                    f"there are {len(groups)}.",
                    fix="pass feature_names (e.g. ['group.feature'] or ['group.*']).",
                )
            feature_names = f"{groups[0].name}.*"
        vectors = self.get_online_features(feature_names, [entity_id])
        assert isinstance(vectors, list)
        return vectors[0]

    def _one_ref(self, feature: str) -> str:
        refs = self.feature_refs(feature)
        return refs if isinstance(refs, str) else refs[0]

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
            self.online, self.registry, group, since, full=full, spark=self.context.given_spark
        )

    def online_plan(self, feature_refs: str | Sequence[str]) -> OnlinePlan:
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
            frame = self.hybrid.latest_pandas(  # DuckDB for small reads: no Spark
                ReadRequest.latest(refs),
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

    def health_check(self) -> HealthResult:
        """Offline and (when enabled) online health, with `healthy` for both together: a dict
        of the details that is falsy when unhealthy (`if store.health_check():` works)."""
        checks = HealthResult(offline=self.offline.health_check())
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


def _is_spark(value: Any) -> bool:
    return is_frame(value) and type(value).__module__.startswith("pyspark")


def _only_gold(strategy: Any, engine: Any) -> None:
    """A Delta version pin reads Gold tables on Spark: refuse a strategy or engine against it."""
    if strategy not in (None, "materialized") or engine not in (None, "spark", "auto"):
        raise FeatureStoreError(
            "as_of_version / as_of_timestamp pin a Gold table's Delta version, which is read on "
            f"Spark from the table (strategy={strategy!r}, engine={engine!r} were asked).",
            fix="drop strategy= and engine= when pinning a version (or drop the pin).",
        )


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


def store_config(
    config: FeatureStoreConfig | Mapping[str, Any] | None, storage_path: str | None
) -> FeatureStoreConfig:
    """The store's config from a config, a mapping of its keys, or `storage_path=` alone."""
    if isinstance(config, FeatureStoreConfig):
        if storage_path is not None and storage_path != config.storage_path:
            raise ArgumentConflictError(
                f"FeatureStore() was given storage_path={storage_path!r} and a config with "
                f"storage_path={config.storage_path!r}.",
                fix="pass one of them.",
            )
        return config
    if isinstance(config, Mapping):
        values = dict(config)
        if storage_path is not None:
            values.setdefault("storage_path", storage_path)
        return FeatureStoreConfig.from_dict(values)
    if config is None and storage_path is not None:
        return FeatureStoreConfig(storage_path=storage_path)
    raise ArgumentConflictError(
        f"FeatureStore() needs a FeatureStoreConfig (or a mapping of its keys, or "
        f"storage_path=), and was given {type(config).__name__}.",
        fix="FeatureStore(FeatureStoreConfig.from_yaml('conf/featurelake.yaml')) or "
        "FeatureStore(storage_path='/data/gold/features'); featurelake takes no application "
        "context object.",
    )
