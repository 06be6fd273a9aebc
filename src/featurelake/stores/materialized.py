"""The materialized store: feature groups kept as versioned Delta tables in the Gold layer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.config import FeatureStoreConfig
from featurelake.engines.spark.frames import is_spark_frame, pandas_for_group, to_spark
from featurelake.engines.spark.latest import ISIN_LIMIT, latest_features
from featurelake.engines.spark.training import TrainingSetMethods
from featurelake.errors import FeatureStoreError, MaterializationError, first_line
from featurelake.gold import delta_ops, small_writes
from featurelake.plan.read_plan import ReadRequest
from featurelake.plan.refs import output_names
from featurelake.registry import Lineage, RegistrationResult, TableLocation
from featurelake.retry import with_config_retries
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, FeatureRef, SqlType
from featurelake.schema.validation import (
    apply_row_checks,
    conform_columns,
    explain_violations,
    is_row_check_failure,
    row_rules,
)
from featurelake.stores.base import BaseFeatureStore, StoreContext
from featurelake.times import event_time_range

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.engines.spark.sources import TableRead
    from featurelake.engines.spark.training import TrainingSet, TrainingSetManifest


class WriteMode(StrEnum):
    """How a batch lands in the Gold table."""

    APPEND = "append"
    OVERWRITE = "overwrite"
    MERGE = "merge"


@dataclass(frozen=True)
class WriteResult:
    """What a successful write did."""

    group: str
    version: int
    mode: str
    rows_written: int
    delta_version: int
    row_count: int
    duration_seconds: float
    table: str
    engine: str = "spark"
    """What committed the write: `spark`, or `delta-rs` for a small write."""


WriteListener = Callable[[WriteResult], None]
BatchHook = Callable[[FeatureGroupSchema, "DataFrame", str], "DataFrame"]
"""`hook(schema, batch, mode) -> batch`: sees each conformed batch before it is written and
returns the batch to write (e.g. without quarantined rows), or raises to stop the write."""


class MaterializedFeatureStore(TrainingSetMethods, BaseFeatureStore):
    """Register feature groups, write validated batches to Gold Delta tables, read them back."""

    def __init__(self, context: StoreContext) -> None:
        super().__init__(context)
        self._listeners: list[WriteListener] = []
        self._batch_hooks: list[BatchHook] = []
        self._key_types: dict[str, dict[str, SqlType]] = {}

    def on_session(
        self, spark: SparkSession, config: FeatureStoreConfig | None = None
    ) -> MaterializedFeatureStore:
        """This store on another Spark session (e.g. a streaming micro-batch's), sharing the
        registry, write listeners and batch hooks; with `config`, under that config (same
        storage)."""
        if spark is self.started_spark and config is None:
            return self
        other = MaterializedFeatureStore(self.context.on_session(spark, config))
        other._listeners = self._listeners
        other._batch_hooks = self._batch_hooks
        return other

    @property
    def batch_hooks(self) -> tuple[BatchHook, ...]:
        """The hooks every batch passes before it is written."""
        return tuple(self._batch_hooks)

    def add_write_listener(self, listener: WriteListener) -> None:
        """Call `listener(result)` after every successful write (e.g. to sync online)."""
        self._listeners.append(listener)

    def add_batch_hook(self, hook: BatchHook) -> None:
        """Run `hook` on every batch before it is written (quality checks use this)."""
        self._batch_hooks.append(hook)

    # -- groups --------------------------------------------------------------------------------

    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult:
        """Register a group version; a compatible change also adds new columns to its table."""
        result = self.registry.register_group(group_schema)
        if result.action == "updated":
            location = self.location(group_schema)
            if delta_ops.table_exists(self.spark, location):
                present = set(delta_ops.read(self.spark, location).columns)
                new = {
                    f.name: f.data_type.simple_string()
                    for f in group_schema.features
                    if f.name not in present
                }
                self._retry(
                    f"adding columns to {location}",
                    lambda: delta_ops.add_columns(self.spark, location, new),
                )
        return result

    def location(self, group: str | FeatureGroupSchema) -> TableLocation:
        schema = group if isinstance(group, FeatureGroupSchema) else self.resolve_group(group)
        return self.registry.gold_location(schema.name, schema.version)

    # -- writes --------------------------------------------------------------------------------

    def write_features(
        self,
        group: str | FeatureGroupSchema,
        df: Any,
        mode: str | WriteMode = WriteMode.APPEND,
        *,
        lineage: Lineage | None = None,
    ) -> WriteResult:
        """Validate `df` against the group's schema and write it to the Gold table.

        Modes: `append`, `overwrite` (whole table), `merge` (upsert on entity keys + event
        time). A batch that breaks the schema raises SchemaValidationError and the table
        version does not change.
        """
        try:
            write_mode = WriteMode(str(mode).lower())
        except ValueError:
            raise MaterializationError(
                f"Unknown write mode '{mode}'.",
                fix="use one of: " + ", ".join(m.value for m in WriteMode) + " (backfill has its "
                "own method, store.backfill(group, df, start, end)).",
            ) from None
        small = self._write_small(group, df, write_mode, lineage)
        if small is not None:
            return small
        return self._write(group, df, write_mode, lineage=lineage)

    def _write_small(
        self, group: str | FeatureGroupSchema, df: Any, mode: WriteMode, lineage: Lineage | None
    ) -> WriteResult | None:
        """Write a small pandas/Arrow batch with delta-rs, without Spark (`gold.small_writes`),
        or return None when it takes the Spark path."""
        if not small_writes.is_small(df, self.config.small_write_max_rows):
            return None
        started = time.perf_counter()
        schema = self.resolve_group(group)
        location = self.location(schema)
        reason = small_writes.spark_needed(
            location,
            schema,
            mode.value,
            self._batch_hooks,
            deletion_vectors=self.config.gold_deletion_vectors,
        )
        if reason is not None:
            logger.info("group {}: a small write goes to Spark: {}", schema.name, reason)
            return None
        commit = small_writes.write(schema, location, df, mode.value, retry=self._retry)
        duration = time.perf_counter() - started
        self.registry.record_write(
            schema,
            mode=mode.value,
            rows_written=commit.rows_written,
            delta_version=commit.version,
            row_count=commit.row_count,
            duration_seconds=duration,
            lineage=lineage,
        )
        result = WriteResult(
            group=schema.name,
            version=schema.version,
            mode=mode.value,
            rows_written=commit.rows_written,
            delta_version=commit.version,
            row_count=commit.row_count,
            duration_seconds=duration,
            table=str(location),
            engine="delta-rs",
        )
        for listener in self._listeners:
            listener(result)
        return result

    def apply_changes(
        self,
        group: str | FeatureGroupSchema,
        upserts: Any,
        deletes: DataFrame | None = None,
        *,
        lineage: Lineage | None = None,
    ) -> WriteResult:
        """Upsert `upserts` (validated like a merge) and delete the rows whose entity keys +
        event time are in `deletes`, in one Delta commit. A key in both is upserted."""
        return self._write(group, upserts, WriteMode.MERGE, lineage=lineage, deletes=deletes)

    def backfill(
        self,
        group: str | FeatureGroupSchema,
        df: Any,
        start: datetime,
        end: datetime,
        *,
        lineage: Lineage | None = None,
    ) -> WriteResult:
        """Replace exactly the rows with `start <= event time < end` by `df` (atomically).

        Every row of `df` must fall in that range; rows outside it stay untouched.
        """
        time_range = event_time_range(start, end, what="backfill")
        return self._write(group, df, WriteMode.OVERWRITE, lineage=lineage, time_range=time_range)

    def _write(
        self,
        group: str | FeatureGroupSchema,
        df: Any,
        mode: WriteMode,
        *,
        lineage: Lineage | None,
        time_range: tuple[datetime, datetime] | None = None,
        deletes: DataFrame | None = None,
    ) -> WriteResult:
        from pyspark.sql import functions as F

        started = time.perf_counter()
        schema = self.resolve_group(group)
        location = self.location(schema)
        key_types = self._existing_key_types(schema, location)
        if is_spark_frame(df):
            frame = df
        elif type(df).__name__ == "DataFrame":
            frame = pandas_for_group(self.spark, df, schema, key_types)
        else:
            frame = to_spark(self.spark, df, what=f"The batch for group '{schema.name}'")
        conformed = conform_columns(frame, schema, key_types)
        for hook in self._batch_hooks:
            conformed = hook(schema, conformed, "backfill" if time_range else mode.value)
        rules = row_rules(schema, unique_key_time=mode is WriteMode.MERGE)
        replace_where = None
        if time_range is not None:
            ts = F.col(schema.timestamp_key)
            start, end = time_range
            rules.append(_range_rule(schema.timestamp_key, ts, start, end))
            replace_where = (
                f"{_quoted(schema.timestamp_key)} >= {delta_ops.timestamp_literal(start)} AND "
                f"{_quoted(schema.timestamp_key)} < {delta_ops.timestamp_literal(end)}"
            )
        checked = apply_row_checks(conformed, rules).withColumn(INGESTED_AT, F.current_timestamp())
        self._ensure_table(schema, location, conformed)
        token = delta_ops.new_token()
        on_columns = [*schema.entity_keys, schema.timestamp_key]

        def attempt() -> None:
            if mode is WriteMode.APPEND:
                delta_ops.append(checked, location, token)
            elif mode is WriteMode.OVERWRITE:
                delta_ops.overwrite(checked, location, token, replace_where)
            elif deletes is not None:
                delta_ops.merge_changes(self.spark, checked, deletes, location, on_columns, token)
            else:
                delta_ops.merge(self.spark, checked, location, on_columns, token)

        what = f"writing group '{schema.name}' v{schema.version} ({mode.value})"
        try:
            self._retry(what, attempt)
        except FeatureStoreError:
            raise
        except Exception as error:
            if is_row_check_failure(error):
                raise explain_violations(conformed, schema, rules) from None
            raise MaterializationError(
                f"Writing group '{schema.name}' v{schema.version} to {location} failed: "
                f"{first_line(error)}",
                fix="the table is unchanged; correct the cause above and write again.",
                group=schema.name,
            ) from error
        try:
            commit = delta_ops.find_commit(self.spark, location, token)
            rows_written, delta_version = commit.rows_written, commit.version
        except LookupError:  # Delta commits nothing for an empty append: the table is unchanged
            commit = None
            rows_written, delta_version = 0, delta_ops.current_version(self.spark, location)
        row_count = delta_ops.row_count(self.spark, location)
        duration = time.perf_counter() - started
        self.registry.record_write(
            schema,
            mode="backfill" if time_range else mode.value,
            rows_written=rows_written,
            delta_version=delta_version,
            row_count=row_count,
            duration_seconds=duration,
            lineage=lineage,
        )
        result = WriteResult(
            group=schema.name,
            version=schema.version,
            mode="backfill" if time_range else mode.value,
            rows_written=rows_written,
            delta_version=delta_version,
            row_count=row_count,
            duration_seconds=duration,
            table=str(location),
        )
        if commit is not None:  # listeners (quality, online sync) follow new versions only
            for listener in self._listeners:
                listener(result)
        return result

    def _existing_key_types(
        self, schema: FeatureGroupSchema, location: TableLocation
    ) -> dict[str, SqlType]:
        cached = self._key_types.get(str(location))
        if cached is not None:
            return cached
        if not delta_ops.table_exists(self.spark, location):
            return {}
        fields = {f.name: f.dataType for f in delta_ops.read(self.spark, location).schema.fields}
        types = {k: SqlType.from_spark(fields[k]) for k in schema.entity_keys if k in fields}
        self._key_types[str(location)] = types
        return types

    def _ensure_table(
        self, schema: FeatureGroupSchema, location: TableLocation, conformed: DataFrame
    ) -> None:
        with self._lock:
            if str(location) in self._key_types:
                return
            fields = {f.name: f.dataType for f in conformed.schema.fields}
            key_types = {
                k: SqlType.from_spark(fields[k]).simple_string() for k in schema.entity_keys
            }
            self._retry(
                f"creating the Gold table {location}",
                lambda: delta_ops.create_table(
                    self.spark,
                    location,
                    schema,
                    key_types,
                    deletion_vectors=self.config.gold_deletion_vectors,
                ),
            )
            self._key_types[str(location)] = {k: SqlType.parse(v) for k, v in key_types.items()}

    def _retry(self, what: str, operation: Callable[[], Any]) -> Any:
        return with_config_retries(operation, what=what, config=self.config)

    # -- reads ---------------------------------------------------------------------------------

    def read_table(
        self,
        group: str | FeatureGroupSchema,
        *,
        as_of_version: int | None = None,
        as_of_timestamp: datetime | str | None = None,
    ) -> DataFrame:
        """Every row of the group's Gold table, now or at a past version / time."""
        schema = self.resolve_group(group)
        location = self.location(schema)
        if not delta_ops.table_exists(self.spark, location):
            raise MaterializationError(
                f"Group '{schema.name}' v{schema.version} has no data yet ({location}).",
                fix=f"write features first: store.write_features('{schema.name}', df).",
                group=schema.name,
            )
        return delta_ops.read(
            self.spark, location, version=as_of_version, timestamp=as_of_timestamp
        )

    def latest(self, request: ReadRequest, entity_ids: Any = None) -> DataFrame:
        """The latest value per entity of the request's features, as of its `point_in_time`,
        from the Gold tables (at its pinned Delta version or time, when given).

        All refs must belong to one group, or to groups that share entity keys (joined on
        them). `entity_ids`: values of a single key, dicts/tuples for several keys, or a
        DataFrame of key columns. The filter is pushed into the Delta scan.
        """

        def frame_for(schema: FeatureGroupSchema, features: list[str]) -> DataFrame:
            return self.read_table(
                schema,
                as_of_version=request.as_of_version,
                as_of_timestamp=request.as_of_timestamp,
            )

        selected = self.resolve_refs(request.refs)
        return latest_features(self.spark, selected, frame_for, entity_ids, request.point_in_time)

    def group_frame(
        self,
        schema: FeatureGroupSchema,
        features: Sequence[str],
        *,
        version: int | None = None,
    ) -> tuple[DataFrame, TableRead]:
        """The rows of a group to join (keys, event time, `features`, `_ingested_at`), read
        from its Gold table at one Delta version (the current one unless `version` is given),
        and the record of that read."""
        from featurelake.engines.spark.sources import TableRead

        location = self.location(schema)
        self.read_table(schema)  # a group without data raises its clear error here
        if version is None:
            version = delta_ops.current_version(self.spark, location)
        frame = delta_ops.read(self.spark, location, version=version).select(
            *schema.entity_keys, schema.timestamp_key, *features, INGESTED_AT
        )
        return frame, TableRead(schema.name, schema.version, version, str(location))

    # -- aggregation groups --------------------------------------------------------------------

    def materialize_aggregations(
        self, group: str | FeatureGroupSchema, as_of: datetime | None = None
    ) -> WriteResult:
        """Write an aggregation group's window values as of `as_of` (default now, UTC) for every
        entity of its source to its Gold table (what the online store serves: with
        `sync_to_online` they go online too, their age the time since `as_of`)."""
        from featurelake.engines.spark import aggregations
        from featurelake.times import utc_now

        schema = aggregations.require_aggregation_group(self.resolve_group(group))
        when = as_of or utc_now().replace(tzinfo=None)
        values = aggregations.values_as_of(self, schema, [when])
        return self.write_features(schema, values, mode="merge")

    def backfill_aggregations(
        self,
        group: str | FeatureGroupSchema,
        start: datetime,
        end: datetime,
        every: str | timedelta = "1d",
    ) -> WriteResult:
        """Replace an aggregation group's Gold rows in `[start, end)` by its values as of
        `start`, `start + every`, ... for every entity of its source."""
        from featurelake.engines.spark import aggregations

        schema = aggregations.require_aggregation_group(self.resolve_group(group))
        times = aggregations.snapshot_times(schema, start, end, every)
        return self.backfill(schema, aggregations.values_as_of(self, schema, times), start, end)

    # -- training sets -------------------------------------------------------------------------

    def rebuild(self, manifest: TrainingSetManifest | str, entity_df: Any = None) -> TrainingSet:
        """Rebuild a training set exactly, from its manifest (or the name it was saved under)."""
        from featurelake.engines.spark.training import rebuild_training_set

        return rebuild_training_set(self, manifest, entity_df)

    # -- table history and health --------------------------------------------------------------

    def history(self, group: str | FeatureGroupSchema) -> list[delta_ops.CommitInfo]:
        """The Delta commits of the group's Gold table, newest first."""
        self.read_table(group)
        return delta_ops.history(self.spark, self.location(group))

    def restore(self, group: str | FeatureGroupSchema, version: int) -> None:
        """Put the Gold table back to a past Delta version (a new commit; history is kept)."""
        self.read_table(group)
        delta_ops.restore(self.spark, self.location(group), version)

    def health_check(self) -> dict[str, Any]:
        """Spark answers, the registry is readable, and every Gold table is reachable."""
        checks: dict[str, Any] = {}
        try:
            checks["spark"] = self.spark.range(1).count() == 1
            groups = self.registry.list_groups(all_versions=True)
            checks["registry"] = True
            checks["groups"] = len(groups)
            missing = [
                f"{g.name}@{g.version}"
                for g in groups
                if delta_ops.table_exists(self.spark, self.location(g)) is False
            ]
            checks["groups_without_data"] = missing
            checks["healthy"] = True
        except Exception as error:
            checks["healthy"] = False
            checks["error"] = first_line(error)
        return checks


def _range_rule(column: str, ts: Any, start: datetime, end: datetime) -> Any:
    from pyspark.sql import functions as F

    from featurelake.schema.validation import RowRule

    return RowRule(
        column,
        f"must be in the backfill range [{start}, {end})",
        (ts < F.lit(start)) | (ts >= F.lit(end)),
    )


def _quoted(name: str) -> str:
    from featurelake.registry import quote_identifier

    return quote_identifier(name)


__all__ = [
    "ISIN_LIMIT",
    "FeatureRef",
    "MaterializedFeatureStore",
    "WriteMode",
    "WriteResult",
    "output_names",
]
