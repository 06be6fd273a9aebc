"""Virtual feature groups: features computed by a query over Silver tables at read time.

A virtual definition is one query per group (Spark SQL text, or a Python function taking the
SparkSession and returning a DataFrame) that yields the group's entity keys, event time and
features. `define_virtual_features` parses and analyses it (no job over the data), checks its
output against the group schema, and keeps it in the registry with the tables it reads, so any
store on the same path can run it.

Queries run through a `QueryExecutor` chosen by name (`EXECUTORS`: `spark`, and `duckdb` for
DuckDB SQL over Delta tables read by delta-rs, in `engines.duckdb.executor`; another engine is a new
module plus one entry). The base class times and logs every call and turns
every engine failure into a `VirtualizationQueryError` naming the group; an executor only talks
to its engine.

Reads follow the materialized store's rules exactly (`reads.latest_features`,
`pit.point_in_time_join`): filters on entity ids and time are applied to the query's DataFrame
and Spark pushes them into the source scans. Virtual rows have no ingestion time: their
`_ingested_at` is a null timestamp, so rows with equal keys and event time are ordered by their
feature values (greatest wins, nulls lowest), the same rule the Gold tables use for exact ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.engines.spark.latest import latest_features
from featurelake.engines.spark.training import TrainingSetMethods
from featurelake.errors import (
    FeatureStoreError,
    SchemaValidationError,
    VirtualizationQueryError,
)
from featurelake.plan.engine_choice import Engine
from featurelake.plan.read_plan import ReadRequest
from featurelake.registry import Lineage, RegistrationResult, group_key
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, SqlType
from featurelake.stores.base import BaseFeatureStore, StoreContext
from featurelake.times import utc_now
from featurelake.virtual.checks import (
    check_current_output,
    check_output,
    check_source_paths,
    engine_message,
    local_path,
)
from featurelake.virtual.definitions import (
    VIRTUAL,
    VirtualDefinition,
    function_path,
    import_function,
)
from featurelake.virtual.executors import QueryExecutor, VirtualQuery, create_query_executor
from featurelake.virtual.feature_queries import join_feature_queries

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.engines.spark.sources import TableRead

QueryFunction = Callable[["SparkSession"], "DataFrame"]


class VirtualizedFeatureStore(TrainingSetMethods, BaseFeatureStore):
    """Feature groups computed at read time by a query, read like Gold tables."""

    def __init__(
        self, context: StoreContext, *, executor: str | QueryExecutor | None = None
    ) -> None:
        super().__init__(context)
        self.default_engine = (
            executor.name
            if isinstance(executor, QueryExecutor)
            else str(executor or Engine.SPARK.value)
        )
        self._executors: dict[str, QueryExecutor] = {}
        if isinstance(executor, QueryExecutor):
            self._executors[executor.name] = executor
        self._functions: dict[str, QueryFunction] = {}

    def executor(self, engine: str | None = None) -> QueryExecutor:
        """The executor of `engine` (default: the store's), created on first use."""
        name = str(engine or self.default_engine)
        with self._lock:
            if name not in self._executors:
                executor = create_query_executor(name, lambda: self.spark)
                executor.timeout_seconds = self.config.query_timeout_seconds
                self._executors[name] = executor
            return self._executors[name]

    # -- groups and definitions -----------------------------------------------------------------

    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult:
        """Register (or update compatibly) a feature group."""
        return self.registry.register_group(group_schema)

    def define_virtual_features(
        self,
        group_schema: FeatureGroupSchema | str,
        query: str | QueryFunction | None = None,
        *,
        queries: Mapping[str, str] | None = None,
        engine: str | None = None,
        sources: Sequence[str] | None = None,
    ) -> VirtualDefinition:
        """Define (or redefine) a group as computed by `query`; registers the group if needed.

        `query` is Spark SQL over registered tables/views (or `delta.`/path``), or a function
        `f(spark) -> DataFrame`; with `engine="duckdb"`, DuckDB SQL reading Delta tables with
        `delta_scan('/path')` (analysed the same way, by DuckDB). It must yield exactly the
        group's entity keys, event time and features, with types equal to or safely castable to
        the declared ones. It is parsed and analysed now, without running a job over the data
        (on Spark Connect, finding the Delta folders of its tables asks Spark for their files).
        `sources` overrides the Delta folders whose statistics feed row estimates.

        `queries={feature: sql}` gives one query per feature instead, each yielding the keys,
        the event time and its feature; the group is their join on keys and event time
        (`virtual.feature_queries`).

        Raises VirtualizationQueryError (with the engine's message and the offending part) for a
        query that does not parse, names an unknown table or column, or does not match the
        group schema.
        """
        if isinstance(group_schema, FeatureGroupSchema):
            schema = group_schema
        else:
            schema = self.resolve_group(group_schema)
        query = self._one_query(schema, query, queries)
        name = str(engine or self.default_engine)
        virtual = (
            VirtualQuery(sql=query) if isinstance(query, str) else VirtualQuery(function=query)
        )
        analysed = self.executor(name).analyse(schema.name, virtual)
        if name == "duckdb":
            check_source_paths(self.config, schema.name, analysed.source_paths)
        check_output(schema, analysed.columns, query if isinstance(query, str) else None)
        if isinstance(group_schema, FeatureGroupSchema):
            self.registry.register_group(schema)
        query_function = function_path(query) if callable(query) else None
        source_paths = tuple(local_path(p) for p in sources) if sources else analysed.source_paths
        definition = VirtualDefinition(
            group=schema.name,
            version=schema.version,
            engine=name,
            query=query if isinstance(query, str) else None,
            function=query_function,
            sources=analysed.sources or source_paths,
            source_paths=source_paths,
            columns={c: t.simple_string() for c, t in analysed.columns},
            fingerprint=schema.fingerprint(),
            created_at=utc_now().isoformat(),
            importable=not callable(query) or function_path is not None,
        )
        if callable(query):
            with self._lock:
                self._functions[definition.key] = query
        self.registry.put_object(VIRTUAL, definition.key, definition.to_dict())
        lineage = Lineage(
            sources=definition.sources,
            job=f"virtual:{name}",
            query=definition.query or definition.function,
        )
        self.registry.append_event(
            "lineage", definition.key, {**lineage.to_dict(), "delta_version": None}
        )
        logger.info(
            "defined virtual group '{}' v{} over {}",
            schema.name,
            schema.version,
            ", ".join(definition.sources) or "(no tables)",
        )
        return definition

    def definition(self, group: str | FeatureGroupSchema) -> VirtualDefinition:
        """The virtual definition of a group version, or a VirtualizationQueryError."""
        schema = self.resolve_group(group)
        found = self.find_definition(schema)
        if found is None:
            raise VirtualizationQueryError(
                f"Group '{schema.name}' v{schema.version} has no virtual definition.",
                fix="define one with store.define_virtual_features(schema, query), or read the "
                "group from its Gold table (MaterializedFeatureStore / HybridFeatureStore).",
                group=schema.name,
            )
        return found

    def find_definition(self, schema: FeatureGroupSchema) -> VirtualDefinition | None:
        """The virtual definition of a registered group version, or None."""
        payload = self.registry.get_object(VIRTUAL, group_key(schema.name, schema.version))
        return VirtualDefinition.from_dict(payload) if payload is not None else None

    def list_definitions(self) -> list[VirtualDefinition]:
        """Every virtual definition of the store, by group and version."""
        found = [
            VirtualDefinition.from_dict(p) for p in self.registry.list_objects(VIRTUAL).values()
        ]
        return sorted(found, key=lambda d: (d.group, d.version))

    # -- rows of a virtual group ----------------------------------------------------------------

    def virtual_frame(self, group: str | FeatureGroupSchema) -> DataFrame:
        """Every row the group's query yields, typed as the schema declares, with a null
        `_ingested_at` (virtual rows have no ingestion time).

        The query's columns are checked against the schema again (its sources or the group
        may have changed since the definition): a mismatch raises VirtualizationQueryError.
        """
        from pyspark.sql import functions as F

        schema = self.resolve_group(group)
        definition = self.definition(schema)
        frame = self.executor(definition.engine).execute(schema.name, self._query_of(definition))
        check_current_output(
            schema,
            definition.query,
            lambda: [(f.name, SqlType.from_spark(f.dataType)) for f in frame.schema.fields],
            SchemaValidationError,
        )
        columns = []
        for key in schema.entity_keys:
            declared = schema.entity_key_types.get(key)
            column = F.col(_quote(key))
            columns.append(column.cast(declared.to_spark()).alias(key) if declared else column)
        columns.append(
            F.col(_quote(schema.timestamp_key)).cast("timestamp").alias(schema.timestamp_key)
        )
        columns += [
            F.col(_quote(f.name)).cast(f.data_type.to_spark()).alias(f.name)
            for f in schema.features
        ]
        columns.append(F.lit(None).cast("timestamp").alias(INGESTED_AT))
        return frame.select(*columns)

    def group_frame(
        self,
        schema: FeatureGroupSchema,
        features: Sequence[str],
        *,
        version: int | None = None,
    ) -> tuple[DataFrame, TableRead | None]:
        """Keys, event time, `features` and `_ingested_at` of a virtual group (no Delta read
        to record, so the second item is None)."""
        if version is not None:
            raise VirtualizationQueryError(
                f"Group '{schema.name}' is virtual: it has no Delta version {version} to read.",
                fix="materialize the group to pin Delta versions, or rebuild without pinning.",
                group=schema.name,
            )
        frame = self.virtual_frame(schema)
        return frame.select(*schema.entity_keys, schema.timestamp_key, *features, INGESTED_AT), None

    def _query_of(self, definition: VirtualDefinition) -> VirtualQuery:
        if definition.query is not None:
            return VirtualQuery(sql=definition.query)
        with self._lock:
            function = self._functions.get(definition.key)
        if function is None and definition.function:
            function = import_function(definition)
            if function is not None:
                with self._lock:
                    self._functions[definition.key] = function
        if function is None:
            raise VirtualizationQueryError(
                f"The virtual query of group '{definition.group}' is a Python function that "
                "was defined in another process and cannot be imported here.",
                fix="define the query function at module level of an importable module (or "
                "as SQL), and define the group again.",
                group=definition.group,
            )
        return VirtualQuery(function=function)

    # -- reads ----------------------------------------------------------------------------------

    def latest(self, request: ReadRequest, entity_ids: Any = None) -> DataFrame:
        """The latest value per entity of the request's virtual features, as of its
        `point_in_time` (same rules as the Gold tables; filters reach the query's scans)."""
        if request.pinned:
            raise VirtualizationQueryError(
                "Virtual groups have no Delta versions: as_of_version / as_of_timestamp read "
                "Gold tables.",
                fix="materialize the groups to pin Delta versions, or read without a pin.",
            )
        selected = self.resolve_refs(request.refs)

        def frame_for(schema: FeatureGroupSchema, features: list[str]) -> DataFrame:
            return self.virtual_frame(schema)

        return latest_features(self.spark, selected, frame_for, entity_ids, request.point_in_time)

    def health_check(self) -> dict[str, Any]:
        """Spark answers, the registry is readable, and every virtual query still analyses."""
        checks: dict[str, Any] = {}
        try:
            checks["spark"] = self.spark.range(1).count() == 1
            definitions = self.list_definitions()
            checks["registry"] = True
            checks["virtual_groups"] = len(definitions)
            broken: dict[str, str] = {}
            for definition in definitions:
                try:
                    schema = self.registry.get_group(definition.group, definition.version)
                    analysed = self.executor(definition.engine).analyse(
                        definition.group, self._query_of(definition)
                    )
                    check_output(schema, analysed.columns, definition.query)
                except FeatureStoreError as error:
                    broken[definition.key] = error.message
            checks["broken_definitions"] = broken
            checks["healthy"] = not broken
        except Exception as error:
            checks["healthy"] = False
            checks["error"] = engine_message(error)
        return checks

    @staticmethod
    def _one_query(
        group: FeatureGroupSchema | str,
        query: str | QueryFunction | None,
        queries: Mapping[str, str] | None,
    ) -> str | QueryFunction:
        name = group.name if isinstance(group, FeatureGroupSchema) else str(group)
        if queries is not None:
            if query is not None:
                raise VirtualizationQueryError(
                    f"Group '{name}' was given both query= and queries=.",
                    fix="pass one query for the whole group.",
                    group=name,
                )
            distinct = {str(q) for q in queries.values()}
            if not isinstance(group, FeatureGroupSchema) or (
                len(distinct) == 1 and set(queries) == set(group.feature_names)
            ):
                return distinct.pop()  # the same query for every feature: the group's query
            return join_feature_queries(group, queries)
        if query is None or not (isinstance(query, str) or callable(query)):
            raise VirtualizationQueryError(
                f"Group '{name}' was given no query.",
                fix="pass Spark SQL text, or a function taking the SparkSession and returning "
                "a DataFrame.",
                group=name,
            )
        if isinstance(query, str) and not query.strip():
            raise VirtualizationQueryError(
                f"The virtual query of group '{name}' is empty.",
                fix="pass a SELECT yielding the keys, event time and features.",
                group=name,
            )
        return query


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
