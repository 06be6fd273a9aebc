"""Spark-free reads of a store: `DuckDBFeatureReader` (pandas in, pandas out).

Gold tables are read with delta-rs (`gold.delta_reader`, pruned by the request's entity ids
and times, at the current or a pinned Delta version); virtual groups defined in DuckDB SQL run
on the `DuckDBQueryExecutor`. The latest-value and point-in-time rules are those of the Spark
path (`engines.duckdb.reads`), so both engines answer a request with the same rows. Nothing here
starts a Spark session; the hybrid router (`stores.hybrid`) decides when this path serves.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.engines.duckdb.composites import finish_request
from featurelake.engines.duckdb.reads import GroupRows, latest_rows, point_in_time_rows
from featurelake.errors import (
    FeatureStoreError,
    MaterializationError,
    PointInTimeError,
    SchemaValidationError,
    VirtualizationQueryError,
)
from featurelake.gold.delta_reader import (
    ScanFilter,
    Snapshot,
    open_snapshot,
    quote,
    read_arrow,
)
from featurelake.plan.estimates import PruneSpec, prune_spec
from featurelake.plan.read_plan import ReadKind, ReadPlan, ReadRequest, resolve_read
from featurelake.plan.refs import (
    check_entity_keys,
    entity_output_names,
    entity_timestamp_column,
    output_names,
    shared_entity_keys,
)
from featurelake.plan.rules import check_fill
from featurelake.registry import Registry, TableLocation
from featurelake.schema import INGESTED_AT, FeatureGroupSchema
from featurelake.storage import is_object_store
from featurelake.times import pandas_utc
from featurelake.virtual.checks import check_current_output
from featurelake.virtual.executors import VirtualQuery

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from featurelake.virtual.definitions import VirtualDefinitions


class DuckDBFeatureReader:
    """Latest and point-in-time reads of registered groups on DuckDB, without Spark."""

    def __init__(self, registry: Registry, *, virtual: VirtualDefinitions | None = None) -> None:
        from featurelake.engines.duckdb.executor import connect

        self.registry = registry
        self.virtual = virtual
        self._connection = connect()
        self._lock = threading.Lock()

    # -- what DuckDB can read ------------------------------------------------------------------

    def gold_unreadable(self, schema: FeatureGroupSchema) -> str | None:
        """Why DuckDB cannot read the group's Gold table, or None when it can."""
        location = self.registry.gold_location(schema.name, schema.version)
        if not _local(location):
            return (
                f"the Gold table {location} is not a local or s3:// Delta path (delta-rs reads "
                "those)"
            )
        try:
            open_snapshot(str(location.path))
        except FeatureStoreError as error:
            return error.message
        return None

    def virtual_unreadable(self, schema: FeatureGroupSchema) -> str | None:
        """Why DuckDB cannot compute the virtual group, or None when it can."""
        if self.virtual is None:
            return "no virtual store is attached"
        definition = self.virtual.find_definition(schema)
        if definition is None:
            return "the group has no virtual definition"
        if definition.engine != "duckdb":
            return f"its virtual query is {definition.engine} SQL"
        return None

    # -- reads ---------------------------------------------------------------------------------

    def read(
        self,
        request: ReadRequest,
        entities: Any = None,
        *,
        virtual_groups: Collection[str] = (),
        versions: Mapping[str, int] | None = None,
    ) -> pd.DataFrame:
        """Run a request on DuckDB (same rules and columns as the Spark path): a latest read
        of the entity ids `entities` (values of one key, dicts/tuples of several keys, or a
        pandas DataFrame of key columns; the Gold tables at the request's pinned Delta version
        or time), or a point-in-time read of the rows of a pandas `entities`, in their order.

        Groups named in `virtual_groups` run their DuckDB query; `versions` pins the Delta
        version a point-in-time read reads per group name.
        """
        plan = resolve_read(self.registry, request)
        if request.kind is ReadKind.POINT_IN_TIME:
            return self._point_in_time(entities, plan, virtual_groups, versions)
        return self._latest(plan, entities, virtual_groups)

    def read_latest(self, plan: ReadPlan, entity_ids: Any = None) -> pd.DataFrame:
        """Run a latest-value plan (its groups resolved and routed once by the store)."""
        return self._latest(plan, entity_ids, plan.virtual_groups)

    def _latest(
        self, plan: ReadPlan, entity_ids: Any, virtual_groups: Collection[str]
    ) -> pd.DataFrame:
        selected, expanded, request = plan.selected, plan.expanded, plan.request
        point_in_time = request.point_in_time
        keys = shared_entity_keys(selected)
        ids = _ids_table(entity_ids, keys)
        names = output_names(selected)
        groups = []
        for schema, features in selected.values():
            spec = prune_spec(
                keys, schema.timestamp_key, entity_ids=entity_ids, point_in_time=point_in_time
            )
            table = self._rows(
                schema,
                schema.feature_names,
                spec,
                virtual=schema.name in virtual_groups,
                version=request.as_of_version,
                timestamp=request.as_of_timestamp,
            )
            groups.append(
                _group_rows(schema, features, table, names, tie_breakers=schema.feature_names)
            )
        with self._cursor() as cursor:
            result = latest_rows(cursor, groups, keys, ids=ids, point_in_time=point_in_time)
        if expanded.has_composites:
            stored = set(names.values())
            kept = [c for c in result.column_names if c not in stored]
            result = finish_request(result, kept, expanded, names)
        return _pandas(result)

    def read_point_in_time(
        self, entity_df: pd.DataFrame, plan: ReadPlan, *, versions: Mapping[str, int] | None = None
    ) -> pd.DataFrame:
        """Run a point-in-time plan (its groups resolved and routed once by the store) for the
        rows of a pandas `entity_df`, in their order."""
        return self._point_in_time(entity_df, plan, plan.virtual_groups, versions)

    def _point_in_time(
        self,
        entity_df: pd.DataFrame,
        plan: ReadPlan,
        virtual_groups: Collection[str],
        versions: Mapping[str, int] | None,
    ) -> pd.DataFrame:
        import pandas as pd

        if not isinstance(entity_df, pd.DataFrame):
            raise PointInTimeError(
                f"entity_df must be a pandas DataFrame for the DuckDB engine, got "
                f"{type(entity_df).__name__}.",
                fix="pass a pandas DataFrame (spark_df.toPandas() for small sets), or use "
                "engine='spark'.",
            )
        fill = plan.request.fill
        timestamp_column = plan.request.timestamp_column
        check_fill(fill)
        selected = plan.selected
        entities = _entity_arrow(entity_df)
        typed = [c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
        column = entity_timestamp_column(list(entity_df.columns), typed, timestamp_column, selected)
        ttl_override = plan.request.ttl
        check_entity_keys(selected, entities.column_names)
        names = entity_output_names(selected, set(entities.column_names))
        time_known = pd.api.types.is_datetime64_any_dtype(entity_df[column])
        groups = []
        for schema, features in selected.values():
            group_ttl = ttl_override or schema.ttl
            spec = prune_spec(
                schema.entity_keys,
                schema.timestamp_key,
                entity_ids=entity_df,
                entity_time_column=column if time_known else None,
                ttl=group_ttl,
            )
            table = self._rows(
                schema,
                features,
                spec,
                virtual=schema.name in virtual_groups,
                version=(versions or {}).get(schema.name),
            )
            groups.append(_group_rows(schema, features, table, names, ttl=group_ttl))
        with self._cursor() as cursor:
            result = point_in_time_rows(cursor, entities, groups, column, fill)
        return _pandas(finish_request(result, entities.column_names, plan.expanded, names))

    # -- rows of one group ----------------------------------------------------------------------

    def _rows(
        self,
        schema: FeatureGroupSchema,
        features: Sequence[str],
        spec: PruneSpec,
        *,
        virtual: bool,
        version: int | None = None,
        timestamp: datetime | str | None = None,
    ) -> pa.Table:
        columns = [*schema.entity_keys, schema.timestamp_key, *features, INGESTED_AT]
        if virtual:
            if version is not None or timestamp is not None:
                raise VirtualizationQueryError(
                    f"Group '{schema.name}' is read virtually: it has no Delta version to read.",
                    fix="materialize the group to read past versions, or read it without one.",
                    group=schema.name,
                )
            return self._virtual_rows(schema, columns)
        snapshot = self.snapshot(schema, version=version, timestamp=timestamp)
        scan = ScanFilter(
            values=spec.key_values,
            time_column=spec.time_column,
            time_min=spec.time_min,
            time_max=spec.time_max,
        )
        return read_arrow(snapshot, columns, scan)

    def snapshot(
        self,
        schema: FeatureGroupSchema,
        *,
        version: int | None = None,
        timestamp: datetime | str | None = None,
    ) -> Snapshot:
        """The group's Gold table as delta-rs opens it (at a version or time when given)."""
        location = self.registry.gold_location(schema.name, schema.version)
        if not _local(location):
            raise MaterializationError(
                f"The DuckDB engine reads Gold tables at local or s3:// paths; group "
                f"'{schema.name}' "
                f"lives in {location}.",
                fix="read it with engine='spark'.",
                group=schema.name,
            )
        try:
            return open_snapshot(str(location.path), version=version, timestamp=timestamp)
        except MaterializationError as error:
            if version is None and timestamp is None:
                raise MaterializationError(
                    f"Group '{schema.name}' v{schema.version} has no data yet ({location}).",
                    fix=f"write features first: store.write_features('{schema.name}', df).",
                    group=schema.name,
                ) from error
            raise

    def _virtual_rows(self, schema: FeatureGroupSchema, columns: Sequence[str]) -> pa.Table:
        from featurelake.engines.duckdb.executor import DuckDBQueryExecutor, duckdb_type

        reason = self.virtual_unreadable(schema)
        if reason is not None:
            raise VirtualizationQueryError(
                f"Group '{schema.name}' cannot be computed on DuckDB: {reason}.",
                fix="read it with engine='spark', or define it with engine='duckdb'.",
                group=schema.name,
            )
        assert self.virtual is not None
        definition = self.virtual.definition(schema)
        executor = self.virtual.executor("duckdb")
        assert isinstance(executor, DuckDBQueryExecutor)
        assert definition.query is not None
        table = executor.execute_arrow(schema.name, VirtualQuery(sql=definition.query))
        from featurelake.engines.duckdb.executor import sql_type_from_arrow

        check_current_output(
            schema,
            definition.query,
            lambda: [(f.name, sql_type_from_arrow(f.type)) for f in table.schema],
            ValueError,
        )
        select = []
        for key in schema.entity_keys:
            declared = schema.entity_key_types.get(key)
            select.append(
                f"CAST({quote(key)} AS {duckdb_type(declared)}) AS {quote(key)}"
                if declared
                else quote(key)
            )
        select.append(
            f"CAST({quote(schema.timestamp_key)} AS TIMESTAMP) AS {quote(schema.timestamp_key)}"
        )
        for feature in schema.features:
            if feature.name in columns:
                select.append(
                    f"CAST({quote(feature.name)} AS {duckdb_type(feature.data_type)}) "
                    f"AS {quote(feature.name)}"
                )
        select.append(f"CAST(NULL AS TIMESTAMP) AS {quote(INGESTED_AT)}")
        with self._cursor() as cursor:
            cursor.register("_fl_virtual_rows", table)
            try:
                return cursor.sql(
                    f"SELECT {', '.join(select)} FROM _fl_virtual_rows"
                ).to_arrow_table()
            finally:
                cursor.unregister("_fl_virtual_rows")

    def _cursor(self) -> _Cursor:
        with self._lock:
            return _Cursor(self._connection.cursor())


class _Cursor:
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.cursor

    def __exit__(self, *exc: object) -> None:
        self.cursor.close()


def _local(location: TableLocation) -> bool:
    """A path table delta-rs opens (a local folder, or `s3://` with the store's options)."""
    path = str(location.path or "")
    if not path or location.table_name:
        return False
    return ("://" not in path and not path.startswith("dbfs:")) or is_object_store(path)


def _ids_table(entity_ids: Any, keys: Sequence[str]) -> pa.Table | None:
    """Entity ids as an Arrow table of key columns (None: every entity)."""
    import pandas as pd
    import pyarrow as pa

    if entity_ids is None:
        return None
    if isinstance(entity_ids, pd.DataFrame):
        missing = [k for k in keys if k not in entity_ids.columns]
        if missing:
            raise SchemaValidationError(
                f"entity_ids lacks the entity key column(s) {missing}.",
                fix=f"include the columns {list(keys)}.",
            )
        return _entity_arrow(entity_ids[list(keys)].drop_duplicates())
    if type(entity_ids).__name__ == "DataFrame":
        raise SchemaValidationError(
            "The DuckDB engine takes entity ids as values or a pandas DataFrame, not a Spark "
            "DataFrame.",
            fix="pass spark_df.toPandas() (small id sets), or use engine='spark'.",
        )
    if isinstance(entity_ids, (str, bytes)) or not isinstance(entity_ids, Sequence):
        entity_ids = [entity_ids]
    values = list(entity_ids)
    if len(keys) == 1 and not any(isinstance(v, (Mapping, tuple, list)) for v in values):
        return pa.table({keys[0]: pa.array([_plain(v) for v in values])})
    rows = []
    for value in values:
        if isinstance(value, Mapping):
            rows.append([_plain(value.get(k)) for k in keys])
        elif isinstance(value, (tuple, list)) and len(value) == len(keys):
            rows.append([_plain(v) for v in value])
        else:
            raise SchemaValidationError(
                f"The entity id {value!r} does not give every key of {list(keys)}.",
                fix="pass dicts like {'key': value, ...} or tuples in key order.",
            )
    return pa.table({k: pa.array([r[i] for r in rows]) for i, k in enumerate(keys)})


def _group_rows(
    schema: FeatureGroupSchema,
    features: Sequence[str],
    table: pa.Table,
    names: Mapping[tuple[str, str], str],
    *,
    tie_breakers: tuple[str, ...] = (),
    ttl: timedelta | None = None,
) -> GroupRows:
    """The rows of one group of a request, with its features' output columns."""
    return GroupRows(
        group=schema.name,
        table=table,
        entity_keys=schema.entity_keys,
        timestamp_key=schema.timestamp_key,
        features=tuple(features),
        tie_breakers=tie_breakers,
        output_names={f: names[(schema.name, f)] for f in features},
        ttl=ttl,
    )


def _pandas(table: pa.Table) -> pd.DataFrame:
    """As Spark's `toPandas()` gives it (timestamps in nanoseconds)."""
    return table.to_pandas(coerce_temporal_nanoseconds=True)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _entity_arrow(frame: pd.DataFrame) -> pa.Table:
    """A pandas frame as Arrow, its times as naive UTC (`featurelake.times`)."""
    import pyarrow as pa

    return pa.Table.from_pandas(pandas_utc(frame, aware=False), preserve_index=False)


__all__ = ["DuckDBFeatureReader"]
