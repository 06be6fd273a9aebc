"""The hybrid store: per request and per group, read the Gold table or run the virtual query.

Rules, in order, for each group of a request:

1. `strategy=` given (one for all groups, or a mapping per group): that strategy.
2. No virtual definition: materialized.
3. A fresh Gold table (it has data and, when the group declares `freshness`, its last recorded
   write is at most that old): materialized.
4. Estimated rows to compute under `hybrid_threshold_rows`: virtual (the Gold table is missing
   or stale, and computing is cheap).
5. Otherwise, with `auto_materialize_on_read`: the group is materialized now (once, whoever
   wins the registry claim writes it) and read from its table. Without it: a stale Gold table
   is read as it is, and a group without one is computed anyway; the decision says which.

With `auto_materialize_on_read`, a group read virtually `auto_materialize_after_reads` times by
this store is materialized the same way.

Estimates never scan data: the rows to compute are the `numRecords` of the files of the query's
source tables that survive pruning on the request's entity ids and times (Delta log statistics
read by delta-rs, `featurelake.plan.estimates`); when those are unknown, the Gold table's
statistics stand in. `explain()` gives every decision with these numbers; every read records a
`RouterMetric` (kept in memory and appended to the registry as `router_metrics` events).

The engine is a choice too (`plan.engine_choice`): the pandas reads (`latest_pandas`,
`historical_pandas`, behind the `FeatureStore`'s pandas reads) run on DuckDB over the same Delta
tables, without a Spark session, when the request's estimated rows are under
`duckdb_threshold_rows` and DuckDB can read every group (Gold tables at local paths, virtual
groups defined in DuckDB SQL); otherwise on Spark. Reads that return a Spark DataFrame always run
on Spark. `explain()` gives the engine a pandas read would use, and why.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.config import StoreMode
from featurelake.engines.spark.composites import finish_request
from featurelake.engines.spark.executor import spark_deadline
from featurelake.engines.spark.latest import latest_features
from featurelake.errors import FeatureStoreError, VirtualizationQueryError
from featurelake.gold import delta_ops
from featurelake.plan.engine_choice import (
    Engine,
    EngineArg,
    EngineDecision,
    GroupFacts,
    choose_engine,
    requested_engine,
)
from featurelake.plan.estimates import PruneSpec, estimate_tables
from featurelake.plan.estimates import prune_spec as request_prune_spec
from featurelake.plan.read_plan import ReadKind, ReadPlan, ReadRequest, resolve_read
from featurelake.plan.refs import shared_entity_keys
from featurelake.plan.routing import RoutingDecision, Strategy, StrategyArg, requested_strategy
from featurelake.registry import Lineage, group_key
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, format_duration
from featurelake.stores.base import BaseFeatureStore, StoreContext, forwarded
from featurelake.stores.materialized import MaterializedFeatureStore, WriteMode, WriteResult
from featurelake.stores.virtualized import VirtualizedFeatureStore
from featurelake.times import event_time_range, rows_in_range, utc_now
from featurelake.virtual.definitions import VirtualDefinition
from featurelake.virtual.executors import QueryExecutor

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.engines.duckdb.reader import DuckDBFeatureReader
    from featurelake.engines.spark.sources import TableRead
    from featurelake.engines.spark.training import TrainingSet, TrainingSetManifest

ROUTER_METRICS = "router_metrics"
READ_LOG_SIZE = 10_000
"""Router metrics kept in memory per store object (the oldest are dropped past it)."""
METRICS_BATCH = 100
METRICS_FLUSH_SECONDS = 5.0
"""Router metrics are committed to the registry in batches: at this many, or this old."""
AUTO_MATERIALIZE = "auto_materialize"


@dataclass(frozen=True)
class RouterMetric:
    """What one read of one group did.

    `duration_seconds` covers routing, any auto-materialization and planning: the returned
    DataFrame runs when the caller acts on it. `actual_rows` is filled where it is known
    without a scan (rows written by an auto-materialization, or a whole Gold table read).
    """

    request_id: str
    operation: str
    group: str
    version: int
    strategy: str
    reason: str
    estimated_rows: int | None
    actual_rows: int | None
    threshold: int
    duration_seconds: float
    auto_materialized: bool
    at: str
    engine: str = Engine.SPARK.value

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterMetric:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class HybridFeatureStore(BaseFeatureStore):
    """Reads each group from its Gold table or its virtual query, whichever the rules pick."""

    def __init__(
        self,
        context: StoreContext,
        *,
        executor: str | QueryExecutor | None = None,
        persist_metrics: bool = True,
        mode: StoreMode = StoreMode.HYBRID,
        read_log_size: int = READ_LOG_SIZE,
        metrics_batch: int = METRICS_BATCH,
        metrics_flush_seconds: float = METRICS_FLUSH_SECONDS,
    ) -> None:
        """`mode` sets what a read prefers when it asks for no strategy: HYBRID routes by row
        count and freshness; MATERIALIZED (and ONLINE) read a group's Gold table when it has
        one; VIRTUALIZED computes every group that has a virtual definition. Router metrics
        are committed `metrics_batch` at a time, or when the oldest unsaved one is
        `metrics_flush_seconds` old."""
        super().__init__(context)
        self.mode = mode
        self.materialized = MaterializedFeatureStore(context)
        self.virtual = VirtualizedFeatureStore(context, executor=executor)
        self.persist_metrics = persist_metrics
        self._metrics: deque[RouterMetric] = deque(maxlen=read_log_size)
        self._unsaved: list[RouterMetric] = []
        self._unsaved_since = 0.0
        self.metrics_batch = metrics_batch
        self.metrics_flush_seconds = metrics_flush_seconds
        self._virtual_reads: dict[str, int] = {}
        self._last_writes: dict[str, tuple[datetime | None, int | None]] = {}
        self._duckdb_reader: DuckDBFeatureReader | None = None

    @property
    def duckdb_reader(self) -> DuckDBFeatureReader:
        """The Spark-free reader over this store's tables (needs the `[duckdb]` extra)."""
        with self._lock:
            if self._duckdb_reader is None:
                from featurelake.engines.duckdb.reader import DuckDBFeatureReader

                self._duckdb_reader = DuckDBFeatureReader(self.registry, virtual=self.virtual)
            return self._duckdb_reader

    # -- groups, writes, definitions (handed to the store that owns them) ----------------------

    register_features = forwarded("materialized", MaterializedFeatureStore.register_features)
    write_features = forwarded("materialized", MaterializedFeatureStore.write_features)
    define_virtual_features = forwarded("virtual", VirtualizedFeatureStore.define_virtual_features)

    def materialize(
        self,
        group: str | FeatureGroupSchema,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> WriteResult:
        """Overwrite the group's Gold table with every row of its virtual query, now; with
        `start` and `end`, replace only the rows with `start <= event time < end` by the
        query's rows in that range (a backfill: the rest of the table stays)."""
        schema = self.virtual.resolve_group(group)
        time_range = None
        if start is not None or end is not None:
            time_range = event_time_range(start, end, what="materialization")
        definition = self.virtual.definition(schema)
        frame = self.virtual.virtual_frame(schema).drop(INGESTED_AT)
        with self._virtual_deadline([schema.name]):
            return self._write_virtual(schema, frame, definition, time_range)

    def _virtual_deadline(self, groups: Collection[str]) -> AbstractContextManager[None]:
        """`query_timeout_seconds` over the Spark work of a read that runs virtual queries."""
        names = sorted(groups)
        if not names or self.config.query_timeout_seconds is None:
            return nullcontext()
        what = "the virtual query of group " + ", ".join(f"'{n}'" for n in names)
        group = names[0] if len(names) == 1 else None
        seconds = self.config.query_timeout_seconds
        return spark_deadline(self.spark, seconds, what=what, group=group)

    def _write_virtual(
        self,
        schema: FeatureGroupSchema,
        frame: DataFrame,
        definition: VirtualDefinition,
        time_range: tuple[datetime, datetime] | None,
    ) -> WriteResult:
        lineage = Lineage(
            sources=definition.sources,
            job="materialize:virtual",
            query=definition.query or definition.function,
        )
        if time_range is None:
            return self.materialized.write_features(
                schema, frame, WriteMode.OVERWRITE, lineage=lineage
            )
        in_range = rows_in_range(frame, schema.timestamp_key, time_range)
        return self.materialized.backfill(schema, in_range, *time_range, lineage=lineage)

    # -- routing ---------------------------------------------------------------------------------

    def explain(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
        *,
        strategy: StrategyArg = None,
        timestamp_column: str | None = None,
        ttl: timedelta | str | None = None,
        engine: EngineArg = "auto",
    ) -> ReadPlan:
        """The plan of this request, without reading or writing anything: its groups and
        versions, output columns, and per group the routing decision with its numbers (the plan
        is a mapping of group name to decision).

        `entity_ids` as for `get_features`; a pandas entity DataFrame with a time column
        (`timestamp_column`, or the group's timestamp key) gives the decision of a
        point-in-time read of those rows. The plan also names the engine a pandas read of the
        request would use (`engine`, and `engine` / `engine_reason` of each decision).
        """
        kind = ReadKind.LATEST if timestamp_column is None else ReadKind.POINT_IN_TIME
        request = ReadRequest.historical(feature_refs, ttl, timestamp_column)
        request = dataclasses.replace(request, kind=kind, point_in_time=point_in_time)
        plan = resolve_read(self.registry, request)
        decisions = {}
        for schema in plan.schemas:
            spec = self._spec(schema, entity_ids, point_in_time, timestamp_column, plan.request.ttl)
            decisions[schema.name] = self._decide(
                schema, spec, requested_strategy(strategy, schema)
            )
        chosen = self._choose_engine(plan, decisions, engine, strict=False)
        return plan.with_decisions(decisions, chosen)

    def _choose_engine(
        self,
        plan: ReadPlan,
        decisions: Mapping[str, RoutingDecision],
        engine: EngineArg,
        *,
        strict: bool = True,
    ) -> EngineDecision:
        """The engine of a request whose groups were routed as `decisions`.

        DuckDB reads the pruned Gold rows of a materialized group, and every source row of a
        virtual one (its query runs whole). With `strict=False` (explain), asking for an
        engine that cannot serve gives a Spark decision saying why instead of raising.
        """
        requested = requested_engine(engine)
        selected = plan.selected
        from featurelake.engines.duckdb.executor import duckdb_installed

        threshold = self.config.duckdb_threshold_rows
        available = duckdb_installed()
        facts = []
        for schema, _ in selected.values():
            decision = decisions[schema.name]
            blocker: str | None
            if decision.strategy is Strategy.VIRTUAL:
                estimate = decision.virtual_estimate
                rows = estimate.rows_total if estimate is not None else None
                blocker = self._virtual_blocker(schema) if available else None
            else:
                estimate = decision.gold_estimate
                rows = estimate.rows if estimate is not None else None
                blocker = self._gold_blocker(schema, decision) if available else None
            if schema.aggregations and available:
                blocker = "its windowed aggregations are computed on Spark"
            facts.append(GroupFacts(schema.name, rows, blocker))
        try:
            return choose_engine(requested, facts, threshold, duckdb_available=available)
        except FeatureStoreError as error:
            if strict:
                raise
            return EngineDecision(
                Engine.SPARK,
                f"engine='duckdb' cannot serve: {error.message}",
                None,
                threshold,
                requested,
            )

    def _gold_blocker(self, schema: FeatureGroupSchema, decision: RoutingDecision) -> str | None:
        if not decision.gold_exists and not decision.auto_materialize:
            return "it has no Gold table"
        if decision.auto_materialize:
            return None  # materialized (on Spark) first, then read
        return self.duckdb_reader.gold_unreadable(schema)

    def _virtual_blocker(self, schema: FeatureGroupSchema) -> str | None:
        definition = self.virtual.find_definition(schema)
        if definition is None:
            return "it has no virtual definition"
        if definition.engine != Engine.DUCKDB.value:
            return f"its virtual query is {definition.engine} SQL"
        if not definition.source_paths:
            return "its virtual query reads no Delta table featurelake knows"
        return None

    def _spec(
        self,
        schema: FeatureGroupSchema,
        entity_ids: Any,
        point_in_time: datetime | None,
        timestamp_column: str | None,
        ttl: timedelta | None,
    ) -> PruneSpec:
        time_column = timestamp_column
        columns = getattr(entity_ids, "columns", None)
        if time_column is None and columns is not None:
            for candidate in ("event_timestamp", schema.timestamp_key):
                if candidate in columns:
                    time_column = candidate
                    break
        return request_prune_spec(
            schema.entity_keys,
            schema.timestamp_key,
            entity_ids=entity_ids,
            point_in_time=point_in_time,
            entity_time_column=time_column,
            ttl=ttl or schema.ttl,
        )

    def _decide(
        self, schema: FeatureGroupSchema, spec: PruneSpec, requested: Strategy | None
    ) -> RoutingDecision:
        """The decision for one group (no side effects)."""
        threshold = self.config.hybrid_threshold_rows
        location = self.materialized.location(schema)
        definition = self.virtual.find_definition(schema)
        table_exists = delta_ops.local_table_exists(location)
        if table_exists is None:  # a catalog or remote table: Spark knows
            table_exists = delta_ops.table_exists(self.spark, location)
        gold_estimate = (
            estimate_tables([location.path], spec) if location.path and table_exists else None
        )
        last_updated: datetime | None = None
        write_version: int | None = None
        if table_exists:
            table_version = gold_estimate.tables[0].version if gold_estimate else None
            last_updated, write_version = self._last_write(schema, table_version)
        has_files = bool(gold_estimate and gold_estimate.files_total)
        gold = table_exists and (last_updated is not None or has_files)
        freshness = schema.freshness
        fresh: bool | None = None
        if gold:
            if freshness is None:
                fresh = True
            else:
                fresh = last_updated is not None and utc_now() - last_updated <= freshness
        virtual_estimate = (
            estimate_tables(definition.source_paths, spec)
            if definition is not None and definition.source_paths
            else None
        )
        if virtual_estimate is not None and virtual_estimate.known:
            compared, source = virtual_estimate, "sources"
        elif gold_estimate is not None and gold_estimate.known and gold:
            compared, source = gold_estimate, "gold"
        else:
            compared, source = None, "none"
        rows = compared.rows if compared is not None else None

        def decision(strategy: Strategy, reason: str, auto: bool = False) -> RoutingDecision:
            return RoutingDecision(
                group=schema.name,
                version=schema.version,
                strategy=strategy,
                reason=reason,
                threshold=threshold,
                estimated_rows=rows,
                estimate_source=source,
                files_total=compared.files_total if compared else 0,
                files_after_pruning=compared.files if compared else 0,
                gold_exists=gold,
                virtual_defined=definition is not None,
                fresh=fresh,
                last_updated=last_updated,
                freshness=freshness,
                gold_estimate=gold_estimate,
                virtual_estimate=virtual_estimate,
                requested=requested,
                auto_materialize=auto,
                gold_write_version=write_version,
            )

        if requested is not None:
            if requested is Strategy.VIRTUAL and definition is None:
                raise VirtualizationQueryError(
                    f"strategy='virtual' was requested for group '{schema.name}' "
                    f"v{schema.version}, which has no virtual definition.",
                    fix="define it with define_virtual_features, or drop strategy= to let the "
                    "router choose.",
                    group=schema.name,
                )
            return decision(requested, f"strategy='{requested.value}' was requested")
        if definition is None:
            return decision(Strategy.MATERIALIZED, "the group has no virtual definition")
        if self.mode is StoreMode.VIRTUALIZED:
            return decision(Strategy.VIRTUAL, "mode VIRTUALIZED computes virtual groups")
        if self.mode in (StoreMode.MATERIALIZED, StoreMode.ONLINE):
            if table_exists:
                return decision(
                    Strategy.MATERIALIZED, f"mode {self.mode.value} reads the Gold table"
                )
            return decision(Strategy.VIRTUAL, "the group has no Gold table yet: computing it")
        if gold and fresh:
            age = f"last write {last_updated:%Y-%m-%d %H:%M:%S} UTC" if last_updated else "data"
            limit = (
                f"within its freshness {format_duration(freshness)}"
                if freshness
                else "no freshness declared"
            )
            return decision(Strategy.MATERIALIZED, f"the Gold table is fresh ({age}, {limit})")
        if not gold:
            state_text = "there is no Gold table"
        else:
            assert freshness is not None
            when = f"{last_updated:%Y-%m-%d %H:%M:%S} UTC" if last_updated else "never recorded"
            state_text = (
                f"the Gold table is stale (last write {when}, older than its freshness "
                f"{format_duration(freshness)})"
            )
        size = f"{rows:,} estimated rows" if rows is not None else "an unknown row count"
        key = group_key(schema.name, schema.version)
        with self._lock:
            reads = self._virtual_reads.get(key, 0)
        auto = self.config.auto_materialize_on_read
        if auto and reads >= self.config.auto_materialize_after_reads:
            return decision(
                Strategy.MATERIALIZED,
                f"{state_text} and the group was read virtually {reads} times "
                f"(auto_materialize_after_reads={self.config.auto_materialize_after_reads}): "
                "materializing it",
                auto=True,
            )
        if rows is not None and rows < threshold:
            return decision(
                Strategy.VIRTUAL, f"{state_text}; {size} < threshold {threshold:,}: computing it"
            )
        over = f"{size} >= threshold {threshold:,}" if rows is not None else size
        if auto and rows is not None:
            return decision(
                Strategy.MATERIALIZED, f"{state_text}; {over}: materializing it", auto=True
            )
        if gold:
            return decision(
                Strategy.MATERIALIZED,
                f"{state_text}, but {over}: reading the stale table (set "
                "auto_materialize_on_read to refresh it, or pass strategy='virtual')",
            )
        return decision(
            Strategy.VIRTUAL,
            f"{state_text} and {over}: computing it anyway (set auto_materialize_on_read, or "
            "write the group, to read a table instead)",
        )

    def _last_write(
        self, schema: FeatureGroupSchema, table_version: int | None
    ) -> tuple[datetime | None, int | None]:
        """(time, Delta version) of the group's last recorded write, from `group_state`.

        Cached while the Gold table stays at the Delta version that write made, so a decision
        reads the registry's history only after the table changed.
        """
        key = group_key(schema.name, schema.version)
        with self._lock:
            cached = self._last_writes.get(key)
        if cached is not None and table_version is not None and cached[1] == table_version:
            return cached
        state = self.registry.group_state(schema.name, schema.version)
        found = (state.last_updated, state.delta_version)
        if table_version is not None and state.delta_version == table_version:
            with self._lock:
                self._last_writes[key] = found
        return found

    def _route(
        self, schema: FeatureGroupSchema, spec: PruneSpec, requested: Strategy | None
    ) -> tuple[RoutingDecision, WriteResult | None]:
        """Decide, materialize first when the decision says so, and count virtual reads."""
        decision = self._decide(schema, spec, requested)
        written = None
        if decision.auto_materialize:
            written, note = self._auto_materialize(schema, decision)
            if written is None:
                decision = dataclasses.replace(
                    decision, strategy=Strategy.VIRTUAL, reason=f"{decision.reason}; {note}"
                )
            else:
                decision = dataclasses.replace(
                    decision,
                    reason=f"{decision.reason} (wrote {written.rows_written:,} rows, Delta "
                    f"version {written.delta_version})",
                    gold_exists=True,
                    fresh=True,
                )
        if decision.strategy is Strategy.VIRTUAL:
            key = group_key(schema.name, schema.version)
            with self._lock:
                self._virtual_reads[key] = self._virtual_reads.get(key, 0) + 1
        logger.info(
            "group '{}' v{}: {} ({})",
            schema.name,
            schema.version,
            decision.strategy.value,
            decision.reason,
        )
        return decision, written

    def _auto_materialize(
        self, schema: FeatureGroupSchema, decision: RoutingDecision
    ) -> tuple[WriteResult | None, str]:
        """Materialize once across readers: the one that claims the registry key writes."""
        base = decision.gold_write_version
        claim = f"{group_key(schema.name, schema.version)}:{'none' if base is None else base}"
        payload = {
            "group": schema.name,
            "version": schema.version,
            "status": "claimed",
            "claimed_at": utc_now().isoformat(),
            "owner": f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}",
            "reason": decision.reason,
        }
        if not self.registry.put_object_if_absent(AUTO_MATERIALIZE, claim, payload):
            held = self.registry.get_object(AUTO_MATERIALIZE, claim) or {}
            if held.get("status") == "failed":
                return None, (
                    f"materializing it failed earlier ({held.get('error')}); computing it "
                    "(call store.materialize(group) once the cause is fixed)"
                )
            return None, "another reader is materializing it: computing it this time"
        try:
            written = self.materialize(schema)
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            self.registry.put_object(
                AUTO_MATERIALIZE, claim, {**payload, "status": "failed", "error": message}
            )
            logger.warning("auto-materializing group '{}' failed: {}", schema.name, message)
            return None, f"materializing it failed ({message}): computing it"
        self.registry.put_object(
            AUTO_MATERIALIZE,
            claim,
            {
                **payload,
                "status": "done",
                "rows_written": written.rows_written,
                "delta_version": written.delta_version,
            },
        )
        return written, "materialized"

    def _frame(self, schema: FeatureGroupSchema, decision: RoutingDecision) -> DataFrame:
        if decision.strategy is Strategy.VIRTUAL:
            return self.virtual.virtual_frame(schema)
        return self.materialized.read_table(schema)

    # -- reads ----------------------------------------------------------------------------------

    def latest(
        self, request: ReadRequest, entity_ids: Any = None, *, strategy: StrategyArg = None
    ) -> DataFrame:
        """The latest value per entity of the request's features, as of its `point_in_time`,
        each group read from its Gold table or its virtual query as the router decides."""
        started = time.perf_counter()
        plan, routed = self._plan_latest(request, entity_ids, strategy)
        result = self._spark_latest(plan, entity_ids)
        self._record("get_features", routed, started, whole=entity_ids is None)
        return result

    def latest_pandas(
        self,
        request: ReadRequest,
        entity_ids: Any = None,
        *,
        strategy: StrategyArg = None,
        engine: EngineArg = "auto",
    ) -> pd.DataFrame:
        """`latest` as a pandas DataFrame, on the engine the router picks for it.

        With `engine="auto"`, DuckDB answers (no Spark session is started) when the request
        is small (`duckdb_threshold_rows`) and DuckDB can read every group; `"spark"` or
        `"duckdb"` force one. The rows are the same either way.
        """
        started = time.perf_counter()
        plan, routed = self._plan_latest(request, entity_ids, strategy)
        chosen = self._choose_engine(plan, plan.decisions, engine)
        plan = plan.with_decisions(plan.decisions, chosen)
        if chosen.engine is Engine.DUCKDB:
            result = self.duckdb_reader.read_latest(plan, entity_ids)
        else:
            with self._virtual_deadline(plan.virtual_groups):
                result = self._spark_latest(plan, entity_ids).toPandas()
        self._record("get_features", routed, started, whole=entity_ids is None, engine=chosen)
        return result

    def _plan_latest(
        self, request: ReadRequest, entity_ids: Any, strategy: StrategyArg
    ) -> tuple[ReadPlan, dict[str, tuple[RoutingDecision, WriteResult | None]]]:
        """The plan of a latest read, each group routed (and materialized first when the
        decision says so)."""
        if request.pinned:
            raise FeatureStoreError(
                "as_of_version / as_of_timestamp pin Gold tables' Delta versions, which the "
                "router does not choose between.",
                fix="read pinned versions from the materialized store (FeatureStore.get_features "
                "does so when given a pin).",
            )
        point_in_time = request.point_in_time
        plan = resolve_read(self.registry, request)
        keys = shared_entity_keys(plan.selected)
        routed: dict[str, tuple[RoutingDecision, WriteResult | None]] = {}
        for schema in plan.schemas:
            spec = request_prune_spec(
                keys, schema.timestamp_key, entity_ids=entity_ids, point_in_time=point_in_time
            )
            routed[schema.name] = self._route(schema, spec, requested_strategy(strategy, schema))
        return plan.with_decisions({n: d for n, (d, _) in routed.items()}, None), routed

    def _spark_latest(self, plan: ReadPlan, entity_ids: Any) -> DataFrame:
        """Run a latest-value plan on Spark (composites computed after the join)."""

        def frame_for(schema: FeatureGroupSchema, features: list[str]) -> DataFrame:
            return self._frame(schema, plan[schema.name])

        point_in_time = plan.request.point_in_time
        result = latest_features(self.spark, plan.selected, frame_for, entity_ids, point_in_time)
        if not plan.expanded.has_composites:
            return result
        stored = [c for c in result.columns if c not in plan.output_columns.values()]
        names = {tuple(ref.split(".", 1)): name for ref, name in plan.output_columns.items()}
        return finish_request(result, stored, plan.expanded, names)  # type: ignore[arg-type]

    def training_set(
        self,
        entity_df: Any,
        request: ReadRequest,
        *,
        name: str | None = None,
        strategy: StrategyArg = None,
    ) -> TrainingSet:
        """A training set and its manifest; each group routed as for `explain(entity_df)`."""
        from featurelake.engines.spark.training import build_training_set

        started = time.perf_counter()
        plan = resolve_read(self.registry, request)
        source = self._routed_source(plan, entity_df, strategy)
        built = build_training_set(source, entity_df, plan, name=name)
        self._record("get_historical_features", source.routed, started, whole=False)
        return built

    def historical_pandas(
        self,
        entity_df: pd.DataFrame,
        request: ReadRequest,
        *,
        strategy: StrategyArg = None,
        engine: EngineArg = "auto",
    ) -> pd.DataFrame:
        """Point-in-time-correct features for the rows of a pandas `entity_df`, as pandas, on
        the engine the router picks (see `latest_pandas`). On DuckDB the rows keep the order
        of `entity_df`."""
        from featurelake.engines.spark.training import build_training_set

        started = time.perf_counter()
        plan = resolve_read(self.registry, request)
        source = self._routed_source(plan, entity_df, strategy)
        for schema in plan.schemas:
            source.route(schema)
        decisions = {n: d for n, (d, _) in source.routed.items()}
        chosen = self._choose_engine(plan, decisions, engine)
        plan = plan.with_decisions(decisions, chosen)
        if chosen.engine is Engine.DUCKDB:
            result = self.duckdb_reader.read_point_in_time(entity_df, plan)
        else:
            built = build_training_set(source, entity_df, plan)
            with self._virtual_deadline(plan.virtual_groups):
                result = built.df.toPandas()
        self._record("get_historical_features", source.routed, started, whole=False, engine=chosen)
        return result

    def _routed_source(
        self, plan: ReadPlan, entity_df: Any, strategy: StrategyArg
    ) -> _RoutedSource:
        """The groups' rows of a point-in-time plan, each routed once (on first ask)."""
        return _RoutedSource(
            self,
            lambda schema: self._spec(
                schema, entity_df, None, plan.request.timestamp_column, plan.request.ttl
            ),
            strategy,
        )

    def rebuild(self, manifest: TrainingSetManifest | str, entity_df: Any = None) -> TrainingSet:
        """Rebuild a training set: Gold tables at the Delta versions it read, virtual groups
        computed again (their sources as they are now)."""
        from featurelake.engines.spark.training import rebuild_training_set

        return rebuild_training_set(
            _RoutedSource(self, lambda s: PruneSpec(), None), manifest, entity_df
        )

    # -- metrics and health ---------------------------------------------------------------------

    def metrics(self, *, persisted: bool = False) -> list[RouterMetric]:
        """Metrics of the reads of this store object, oldest first; with `persisted`, those
        every process recorded in the registry."""
        if persisted:
            self.flush_metrics()
            return [RouterMetric.from_dict(e) for e in self.registry.events(ROUTER_METRICS)]
        with self._lock:
            return list(self._metrics)

    def _record(
        self,
        operation: str,
        routed: Mapping[str, tuple[RoutingDecision, WriteResult | None]],
        started: float,
        *,
        whole: bool,
        engine: EngineDecision | None = None,
    ) -> None:
        duration = round(time.perf_counter() - started, 6)
        request_id = uuid.uuid4().hex[:12]
        at = utc_now().isoformat()
        for decision, written in routed.values():
            actual = written.rows_written if written is not None else None
            if (
                actual is None
                and whole
                and decision.strategy is Strategy.MATERIALIZED
                and decision.gold_estimate is not None
            ):
                actual = decision.gold_estimate.rows_total
            metric = RouterMetric(
                request_id=request_id,
                operation=operation,
                group=decision.group,
                version=decision.version,
                strategy=decision.strategy.value,
                reason=decision.reason,
                estimated_rows=decision.estimated_rows,
                actual_rows=actual,
                threshold=decision.threshold,
                duration_seconds=duration,
                auto_materialized=written is not None,
                at=at,
                engine=engine.engine.value if engine else Engine.SPARK.value,
            )
            with self._lock:
                self._metrics.append(metric)
                if self.persist_metrics:
                    if not self._unsaved:
                        self._unsaved_since = time.monotonic()
                    self._unsaved.append(metric)
        with self._lock:
            due = len(self._unsaved) >= self.metrics_batch or (
                self._unsaved
                and time.monotonic() - self._unsaved_since >= self.metrics_flush_seconds
            )
        if due:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        """Commit the router metrics not saved yet to the registry (one commit)."""
        with self._lock:
            batch, self._unsaved = self._unsaved, []
        if not batch:
            return
        try:
            self.registry.append_events(
                [(ROUTER_METRICS, group_key(m.group, m.version), m.to_dict()) for m in batch]
            )
        except Exception as error:  # metrics must never fail a read
            logger.warning("could not record {} router metrics: {}", len(batch), error)

    def health_check(self) -> dict[str, Any]:
        """The materialized and the virtual side's checks together."""
        materialized = self.materialized.health_check()
        virtual = self.virtual.health_check()
        return {
            "healthy": bool(materialized.get("healthy") and virtual.get("healthy")),
            "materialized": materialized,
            "virtual": virtual,
        }


class _RoutedSource:
    """A training set's view of the hybrid store: each group's rows from where the router
    sends them (Gold at a pinned Delta version always reads the table)."""

    def __init__(
        self,
        store: HybridFeatureStore,
        spec_for: Callable[[FeatureGroupSchema], PruneSpec],
        strategy: StrategyArg,
    ) -> None:
        self.store = store
        self.config = store.config
        self.registry = store.registry
        self.spec_for = spec_for
        self.strategy = strategy
        self.routed: dict[str, tuple[RoutingDecision, WriteResult | None]] = {}

    @property
    def spark(self) -> SparkSession:
        return self.store.spark

    def resolve_refs(
        self, feature_refs: str | Sequence[str]
    ) -> dict[str, tuple[FeatureGroupSchema, list[str]]]:
        return self.store.resolve_refs(feature_refs)

    def route(self, schema: FeatureGroupSchema) -> RoutingDecision:
        """The group's decision for this request (routed once, on first ask)."""
        if schema.name not in self.routed:
            requested = requested_strategy(self.strategy, schema)
            self.routed[schema.name] = self.store._route(schema, self.spec_for(schema), requested)
        return self.routed[schema.name][0]

    def group_frame(
        self, schema: FeatureGroupSchema, features: Sequence[str], *, version: int | None = None
    ) -> tuple[DataFrame, TableRead | None]:
        if version is not None:
            return self.store.materialized.group_frame(schema, features, version=version)
        decision = self.route(schema)
        if decision.strategy is Strategy.VIRTUAL:
            return self.store.virtual.group_frame(schema, features)
        return self.store.materialized.group_frame(schema, features)


__all__ = [
    "AUTO_MATERIALIZE",
    "ROUTER_METRICS",
    "HybridFeatureStore",
    "RouterMetric",
]
