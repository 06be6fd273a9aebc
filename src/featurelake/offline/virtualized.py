"""Virtual feature groups: features computed by a query over Silver tables at read time.

A virtual definition is one query per group (Spark SQL text, or a Python function taking the
SparkSession and returning a DataFrame) that yields the group's entity keys, event time and
features. `define_virtual_features` parses and analyses it (no job over the data), checks its
output against the group schema, and keeps it in the registry with the tables it reads, so any
store on the same path can run it.

Queries run through a `QueryExecutor` chosen by name (`EXECUTORS`: `spark`, and `duckdb` for
DuckDB SQL over Delta tables read by delta-rs, in `offline.duckdb`; another engine is a new
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

import importlib
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger

from featurelake.config import FeatureStoreConfig
from featurelake.errors import (
    ConfigurationError,
    FeatureStoreError,
    SchemaValidationError,
    VirtualizationQueryError,
)
from featurelake.offline.base import BaseFeatureStore
from featurelake.offline.engines import Engine
from featurelake.offline.feature_queries import join_feature_queries
from featurelake.offline.reads import latest_features, resolve_refs
from featurelake.offline.training import TrainingSetMethods
from featurelake.plugins import load_subclass
from featurelake.registry import Lineage, RegistrationResult, Registry, group_key
from featurelake.registry.locations import store_root
from featurelake.schema import INGESTED_AT, DataType, FeatureGroupSchema, SqlType, is_safe_cast
from featurelake.session import jvm_attribute, unsupported_over_connect
from featurelake.times import spark_utc, utc_now

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.offline.training import TableRead

VIRTUAL = "virtual"
"""Registry kind of virtual definitions (key `group@version`)."""

QueryFunction = Callable[["SparkSession"], "DataFrame"]


# -- queries and executors ----------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualQuery:
    """What an executor runs: SQL text, or a function `f(spark) -> DataFrame`."""

    sql: str | None = None
    function: QueryFunction | None = None

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.function is None):
            raise ValueError("a VirtualQuery holds exactly one of sql and function")


@dataclass(frozen=True)
class AnalysedQuery:
    """A query's output columns (featurelake types) and the tables it reads."""

    columns: tuple[tuple[str, SqlType], ...]
    sources: tuple[str, ...] = ()
    """Tables and views the query names (as written, `delta.`/path`` for path tables)."""
    source_paths: tuple[str, ...] = ()
    """Root folders of the Delta tables it reads (their log statistics feed estimates)."""


@dataclass
class _Timing:
    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


class QueryExecutor(ABC):
    """Runs virtual queries on one engine. Subclasses implement `_analyse` and `_execute`.

    The base class logs and times every call and wraps every engine failure into a
    `VirtualizationQueryError` naming the group, the engine and the cause (`_describe_error`
    lets an engine say why and what to do for the errors it knows).
    """

    name: ClassVar[str] = "?"

    def __init__(self) -> None:
        self._timings: dict[str, _Timing] = {}
        self._lock = threading.Lock()

    def analyse(self, group: str, query: VirtualQuery) -> AnalysedQuery:
        """Parse and analyse `query` without reading data: its columns and source tables."""
        return self._call("analyse", group, query, lambda: self._analyse(query))

    def execute(self, group: str, query: VirtualQuery) -> DataFrame:
        """The query's rows as a (lazy) Spark DataFrame.

        Errors Spark raises later, when the DataFrame runs, are Spark's own.
        """
        return self._call("execute", group, query, lambda: self._execute(query))

    def timings(self) -> dict[str, dict[str, float]]:
        """Calls, failures and seconds spent per operation (`analyse`, `execute`)."""
        with self._lock:
            return {
                action: {"calls": t.calls, "failures": t.failures, "seconds": round(t.seconds, 6)}
                for action, t in self._timings.items()
            }

    @abstractmethod
    def _analyse(self, query: VirtualQuery) -> AnalysedQuery: ...

    @abstractmethod
    def _execute(self, query: VirtualQuery) -> DataFrame: ...

    def _describe_error(
        self, error: BaseException, query: VirtualQuery
    ) -> tuple[str, str, str, dict[str, Any]]:
        """(why, engine message, fix, details) for an engine error; engines override this for
        the errors they know."""
        return (
            "failed",
            _engine_message(error),
            "correct the query (the engine's message above names the problem).",
            {},
        )

    def _call(
        self, action: str, group: str, query: VirtualQuery, operation: Callable[[], Any]
    ) -> Any:
        started = time.perf_counter()
        failed = False
        try:
            return operation()
        except VirtualizationQueryError:
            failed = True
            raise
        except NotASingleQuery as error:
            failed = True
            raise error.to_error(group) from None
        except Exception as error:
            failed = True
            attribute = jvm_attribute(error)
            if attribute is not None:
                raise unsupported_over_connect(
                    f"The virtual query of group '{group}'", attribute, group=group
                ) from error
            why, message, fix, details = self._describe_error(error, query)
            raise VirtualizationQueryError(
                f"The virtual query of group '{group}' {why} ({self.name} engine): {message}",
                fix=fix,
                group=group,
                engine=self.name,
                **details,
            ) from error
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                timing = self._timings.setdefault(action, _Timing())
                timing.calls += 1
                timing.failures += int(failed)
                timing.seconds += elapsed
            logger.debug(
                "{} {} of group '{}' took {:.3f}s{}",
                self.name,
                action,
                group,
                elapsed,
                " (failed)" if failed else "",
            )


class SparkQueryExecutor(QueryExecutor):
    """Spark SQL (or a DataFrame function) on the store's session.

    SQL always runs inside a CTE (`wrap_sql`), so only a query parses: a DDL or DML statement,
    or two statements, are syntax errors instead of being executed.
    """

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        super().__init__()
        self.spark = spark

    def _frame(self, query: VirtualQuery) -> DataFrame:
        if query.function is not None:
            frame = query.function(self.spark)
            if not _is_spark_frame(frame):
                raise VirtualizationQueryError(
                    f"The virtual query function returned {type(frame).__name__}, not a Spark "
                    "DataFrame.",
                    fix="return spark.sql(...) or a DataFrame built from spark.table(...).",
                )
            return frame
        assert query.sql is not None
        check_single_query(self.spark, query.sql)
        return self.spark.sql(wrap_sql(query.sql))

    def _execute(self, query: VirtualQuery) -> DataFrame:
        return spark_utc(self._frame(query))  # wall-clock (NTZ) times mean UTC

    def _analyse(self, query: VirtualQuery) -> AnalysedQuery:
        frame = self._frame(query)
        columns = []
        for f in frame.schema.fields:
            try:
                columns.append((f.name, SqlType.from_spark(f.dataType)))
            except SchemaValidationError as error:
                raise VirtualizationQueryError(
                    f"The query's column '{f.name}' has the type {f.dataType.simpleString()}, "
                    "which featurelake cannot store.",
                    fix="cast it to a supported type (int, bigint, double, string, timestamp, "
                    "array<...>, map<...>, struct<...>).",
                    column=f.name,
                ) from error
        sources = relation_names(frame, query.sql)
        paths: set[str | None] = {delta_path_of(name) for name in sources}
        roots = plan_roots(frame)
        if roots is None and (not sources or None in paths):
            # No JVM plan to read (Spark Connect) and a source that is not a Delta path (a
            # view or a catalog table): ask Spark for the files (one file-listing job).
            roots = delta_roots(frame.inputFiles())
        paths |= roots or set()
        return AnalysedQuery(
            columns=tuple(columns),
            sources=sources,
            source_paths=tuple(sorted(p for p in paths if p)),
        )

    def _describe_error(
        self, error: BaseException, query: VirtualQuery
    ) -> tuple[str, str, str, dict[str, Any]]:
        condition = _condition(error)
        text = str(error)
        message = _engine_message(error)
        if condition.startswith("PARSE") or type(error).__name__ == "ParseException":
            position = re.search(r"\(line (\d+), pos (\d+)\)", text)
            near = re.search(r"at or near (.+?)[.:]", text)
            details: dict[str, Any] = {"condition": condition or "PARSE_SYNTAX_ERROR"}
            if near:
                details["near"] = near[1]
            if position:
                line, pos = int(position[1]), int(position[2])
                if line == 1:
                    pos = max(pos - len(WRAP_PREFIX), 0)
                details["line"], details["position"] = line, pos
                head = (
                    text.strip().splitlines()[0].replace(position[0], f"(line {line}, pos {pos})")
                )
                message = head + _excerpt(query.sql or "", line, pos)
            return (
                "does not parse",
                message,
                "correct the SQL at the position shown; a virtual query is one SELECT (WITH ... "
                "SELECT is fine) without a trailing statement.",
                details,
            )
        if condition.startswith("TABLE_OR_VIEW_NOT_FOUND"):
            name = re.search(r"`([^`]+(?:`\.`[^`]+)*)`", text)
            return (
                "references a table or view that does not exist",
                message,
                "create or register it first (df.createOrReplaceTempView('name'), a catalog "
                "table, or delta.`/path/to/table`), or correct the name.",
                {"condition": condition, "table": name[1] if name else None},
            )
        if condition.startswith("UNRESOLVED_COLUMN"):
            name = re.search(r"name `([^`]+)`", text)
            return (
                "references a column that does not exist",
                message,
                "use one of the columns Spark suggests above.",
                {"condition": condition, "column": name[1] if name else None},
            )
        return (
            "failed",
            message,
            "correct the query (Spark's message above names the problem).",
            {"condition": condition} if condition else {},
        )


ExecutorLoader = Callable[[Any], QueryExecutor]


def _session(spark: Any) -> SparkSession:
    return spark() if callable(spark) else spark


def _spark_executor(spark: Any) -> QueryExecutor:
    return SparkQueryExecutor(_session(spark))


def _duckdb_executor(spark: Any) -> QueryExecutor:
    from featurelake.offline.duckdb import load_executor  # DependencyNotInstalledError without it

    return load_executor(spark)


EXECUTORS: dict[str, ExecutorLoader] = {
    Engine.SPARK.value: _spark_executor,
    Engine.DUCKDB.value: _duckdb_executor,
}


def create_query_executor(name: str, spark: Any) -> QueryExecutor:
    """The executor called `name`: a key of `EXECUTORS`, or the dotted path of a
    `QueryExecutor` subclass (constructed with the SparkSession). `spark` is a session or a
    function returning one (called only by engines that need Spark)."""
    loader = EXECUTORS.get(str(name).lower())
    if loader is not None:
        return loader(spark)
    if "." in str(name):
        cls = load_subclass(str(name), QueryExecutor, what="query executor")
        factory: Callable[[SparkSession], QueryExecutor] = cls
        return factory(_session(spark))
    raise ConfigurationError(
        f"Unknown query executor '{name}'.",
        fix=f"use one of {', '.join(EXECUTORS)}, or the dotted path of a QueryExecutor class.",
    )


# -- definitions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualDefinition:
    """A virtual group as the registry keeps it."""

    group: str
    version: int
    engine: str
    query: str | None
    function: str | None
    """`module:qualname` of a query function (None for SQL, or a function not importable)."""
    sources: tuple[str, ...]
    source_paths: tuple[str, ...]
    columns: Mapping[str, str]
    fingerprint: str
    created_at: str = ""
    importable: bool = True

    @property
    def key(self) -> str:
        return group_key(self.group, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "version": self.version,
            "engine": self.engine,
            "query": self.query,
            "function": self.function,
            "sources": list(self.sources),
            "source_paths": list(self.source_paths),
            "columns": dict(self.columns),
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
            "importable": self.importable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VirtualDefinition:
        return cls(
            group=data["group"],
            version=int(data["version"]),
            engine=data.get("engine", Engine.SPARK.value),
            query=data.get("query"),
            function=data.get("function"),
            sources=tuple(data.get("sources", ())),
            source_paths=tuple(data.get("source_paths", ())),
            columns=dict(data.get("columns", {})),
            fingerprint=data.get("fingerprint", ""),
            created_at=data.get("created_at", ""),
            importable=bool(data.get("importable", True)),
        )


class VirtualizedFeatureStore(TrainingSetMethods, BaseFeatureStore):
    """Feature groups computed at read time by a query, read like Gold tables."""

    def __init__(
        self,
        config: FeatureStoreConfig,
        spark: SparkSession | None = None,
        registry: Registry | None = None,
        *,
        executor: str | QueryExecutor | None = None,
    ) -> None:
        self.config = config
        self._spark = spark
        self.registry = registry or Registry(config, spark)
        self.default_engine = (
            executor.name
            if isinstance(executor, QueryExecutor)
            else str(executor or Engine.SPARK.value)
        )
        self._executors: dict[str, QueryExecutor] = {}
        if isinstance(executor, QueryExecutor):
            self._executors[executor.name] = executor
        self._functions: dict[str, QueryFunction] = {}
        self._lock = threading.Lock()

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = self.registry.spark
        return self._spark

    def executor(self, engine: str | None = None) -> QueryExecutor:
        """The executor of `engine` (default: the store's), created on first use."""
        name = str(engine or self.default_engine)
        with self._lock:
            if name not in self._executors:
                self._executors[name] = create_query_executor(name, lambda: self.spark)
            return self._executors[name]

    # -- groups and definitions -----------------------------------------------------------------

    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult:
        """Register (or update compatibly) a feature group."""
        return self.registry.register_group(group_schema)

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
        (`offline.feature_queries`).

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
        function_path = _function_path(query) if callable(query) else None
        source_paths = tuple(_local_path(p) for p in sources) if sources else analysed.source_paths
        definition = VirtualDefinition(
            group=schema.name,
            version=schema.version,
            engine=name,
            query=query if isinstance(query, str) else None,
            function=function_path,
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
        try:
            found = [(f.name, SqlType.from_spark(f.dataType)) for f in frame.schema.fields]
        except SchemaValidationError as error:
            raise VirtualizationQueryError(
                f"The virtual query of group '{schema.name}' now yields a column featurelake "
                f"cannot read: {error.message}",
                fix="cast it in the query and define the group again.",
                group=schema.name,
            ) from error
        check_output(schema, found, definition.query)
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
            function = _import_function(definition)
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

    def get_features(
        self,
        feature_refs: str | Sequence[str],
        entity_ids: Any = None,
        point_in_time: datetime | None = None,
    ) -> DataFrame:
        """The latest value per entity of the referenced virtual features, as of
        `point_in_time` (same rules as the Gold tables; filters reach the query's scans)."""
        selected = self.resolve_refs(feature_refs)

        def frame_for(schema: FeatureGroupSchema, features: list[str]) -> DataFrame:
            return self.virtual_frame(schema)

        return latest_features(self.spark, selected, frame_for, entity_ids, point_in_time)

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
            checks["error"] = _engine_message(error)
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


def check_output(
    schema: FeatureGroupSchema,
    columns: Sequence[tuple[str, SqlType]],
    query: str | None = None,
) -> None:
    """Raise VirtualizationQueryError unless the query's columns match the group schema."""
    found = dict(columns)
    expected = list(schema.columns)
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    where = f"The virtual query of group '{schema.name}' v{schema.version}"
    if missing or extra:
        parts = []
        if missing:
            near = {c: [f for f in found if f.lower() == c.lower()] for c in missing}
            hints = [f"'{c}' (found '{near[c][0]}')" if near[c] else f"'{c}'" for c in missing]
            parts.append(f"lacks the column(s) {', '.join(hints)}")
        if extra:
            parts.append(f"yields column(s) the group does not declare: {', '.join(extra)}")
        raise VirtualizationQueryError(
            f"{where} {' and '.join(parts)}. It must yield exactly: {', '.join(expected)}.",
            fix="alias the query's columns to the schema's names (SELECT x AS name) and select "
            "only the keys, the event time and the features.",
            group=schema.name,
            missing=missing,
            extra=extra,
            query=query,
        )
    problems = []
    for key in schema.entity_keys:
        declared = schema.entity_key_types.get(key)
        actual = found[key]
        if declared is not None and not is_safe_cast(actual, declared):
            problems.append((key, actual, declared.simple_string()))
        elif declared is None and not actual.is_atomic:
            problems.append((key, actual, "an atomic type"))
    stamp = found[schema.timestamp_key]
    if stamp.kind not in (DataType.TIMESTAMP, DataType.DATE):
        problems.append((schema.timestamp_key, stamp, "timestamp"))
    for feature in schema.features:
        if not is_safe_cast(found[feature.name], feature.data_type):
            problems.append((feature.name, found[feature.name], feature.data_type.simple_string()))
    if problems:
        listing = "; ".join(f"'{c}' is {actual} but must be {want}" for c, actual, want in problems)
        raise VirtualizationQueryError(
            f"{where} yields columns of the wrong type: {listing}.",
            fix="cast them in the query (CAST(x AS type)) to the declared type, or to one that "
            "converts without loss (int -> bigint, float -> double, date -> timestamp).",
            group=schema.name,
            columns=[c for c, _, _ in problems],
            query=query,
        )


# -- helpers ------------------------------------------------------------------------------------


WRAP_PREFIX = "WITH _fl_virtual AS ("


def wrap_sql(sql: str) -> str:
    """`WITH _fl_virtual AS (<sql>) SELECT * FROM _fl_virtual`: only a query fits there, so a
    DDL/DML statement or a second statement is a syntax error instead of being run.

    The query keeps its line numbers (positions on its first line move by the prefix, which
    error messages take back).
    """
    body = sql.rstrip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return f"{WRAP_PREFIX}{body}\n) SELECT * FROM _fl_virtual"


def check_single_query(spark: SparkSession, sql: str) -> None:
    """VirtualizationQueryError unless `sql` is one query statement on its own, so nothing in
    it can close the wrapping sub-query (`wrap_sql`) and start a statement Spark would run.

    The text is scanned for a parenthesis closed at top level or a statement after a `;`
    (comments and quoted text skipped); on a classic session, Spark's parser must also read it
    as one query, or as nothing at all (a syntax error, reported by the usual parse)."""
    problem = _top_level_problem(sql)
    if problem is None:
        parser = _jvm_parser(spark)
        body = sql.rstrip().rstrip(";")
        if (
            parser is not None
            and not _parses(parser.parseQuery, body)
            and _parses(parser.parsePlan, body)
        ):
            problem = "it is a statement other than a query"
    if problem is not None:
        raise NotASingleQuery(problem)


class NotASingleQuery(Exception):
    """The text of a virtual query is not one query statement (reported with its group)."""

    def to_error(self, group: str) -> VirtualizationQueryError:
        return VirtualizationQueryError(
            f"The virtual query of group '{group}' does not parse as a single query statement "
            f"(SELECT, or WITH ... SELECT): {self.args[0]}.",
            fix="pass one query without DDL, DML, a second statement or unbalanced parentheses.",
            group=group,
            condition="NOT_A_SINGLE_QUERY",
        )


def _jvm_parser(spark: SparkSession) -> Any:
    try:
        return spark._jsparkSession.sessionState().sqlParser()
    except Exception:  # Spark Connect: no JVM in this process (the text scan still applies)
        return None


def _parses(parse: Callable[[str], Any], text: str) -> bool:
    try:
        parse(text)
    except Exception:
        return False
    return True


def _top_level_problem(sql: str) -> str | None:
    """Why the text could reach outside a wrapping parenthesis, or None."""
    depth = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            i += 1
            while i < n and sql[i] != c:
                i += 2 if sql[i] == "\\" and c != "`" else 1
        elif sql.startswith("--", i):
            while i < n and sql[i] != "\n":
                i += 1
        elif sql.startswith("/*", i):
            nested, i = 1, i + 2
            while i < n and nested:
                if sql.startswith("/*", i):
                    nested, i = nested + 1, i + 2
                elif sql.startswith("*/", i):
                    nested, i = nested - 1, i + 2
                else:
                    i += 1
            continue  # an unclosed comment or quote swallows the wrapper: a syntax error
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return f"a parenthesis at position {i} closes one it did not open"
        elif c == ";" and depth == 0 and sql[i + 1 :].strip(" \t\r\n;"):
            return f"a second statement follows the ';' at position {i}"
        i += 1
    return None


_RELATION = re.compile(r"'UnresolvedRelation \[([^\]]*)\]")
_CTE = re.compile(r"(?:CTE|UnresolvedWith) \[([^\]]*)\]")


def relation_names(frame: DataFrame, sql: str | None = None) -> tuple[str, ...]:
    """The tables and views a DataFrame's query names, from its parsed plan.

    The plan is read through the JVM on a classic session. Over Spark Connect (no JVM, and
    every plan-explaining call plans the scan, which runs jobs) the query text `sql` is parsed
    instead; without it the names are unknown: ().
    """
    try:
        plan = str(frame._jdf.queryExecution().logical().toString())
    except Exception:
        return sql_relation_names(sql) if sql is not None else ()
    ctes = {n.strip() for m in _CTE.finditer(plan) for n in m[1].split(",")}
    relations = [[p.strip() for p in m[1].split(", ")] for m in _RELATION.finditer(plan)]
    return _relation_names(relations, ctes)


def sql_relation_names(sql: str) -> tuple[str, ...]:
    """The tables and views a Spark SQL query names, parsed without Spark (sqlglot)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="spark")
    except sqlglot.errors.ParseError:
        return ()
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    relations = [
        [part.name for part in table.parts] for table in tree.find_all(exp.Table, bfs=False)
    ]
    return _relation_names(relations, ctes)


def _relation_names(relations: Sequence[Sequence[str]], ctes: set[str]) -> tuple[str, ...]:
    names: list[str] = []
    for parts in relations:
        if len(parts) == 2 and parts[0].lower() in ("delta", "parquet") and "/" in parts[1]:
            name = f"{parts[0].lower()}.`{parts[1]}`"
        elif len(parts) == 1 and parts[0] in ctes:
            continue
        else:
            name = ".".join(parts)
        if name not in names:
            names.append(name)
    return tuple(names)


def plan_roots(frame: DataFrame) -> set[str] | None:
    """Root folders of the file relations (Delta tables) in the analysed plan, or None when
    the plan cannot be read (Spark Connect). Reading the analysed plan runs no job."""
    try:
        leaves = frame._jdf.queryExecution().analyzed().collectLeaves().iterator()
    except Exception:
        return None
    roots: set[str] = set()
    while leaves.hasNext():
        leaf = leaves.next()
        try:
            paths = str(leaf.relation().location().rootPaths().mkString("\n"))
        except Exception:  # not a file relation (CTE reference, local rows, ...)
            continue
        roots.update(_local_path(p).rstrip("/") for p in paths.splitlines() if p)
    return roots


def delta_path_of(name: str) -> str | None:
    """The folder of a `delta.`/path`` table name, else None."""
    match = re.fullmatch(r"delta\.`(.+)`", name)
    return _local_path(match[1]).rstrip("/") if match else None


def delta_roots(files: Sequence[str]) -> set[str]:
    """The Delta table folders holding `files` (each file's nearest parent with `_delta_log`)."""
    roots: set[str] = set()
    checked: dict[str, bool] = {}
    for file in files:
        folder = os.path.dirname(_local_path(file))
        for _ in range(12):
            if not folder or folder in (os.sep, "."):
                break
            if folder not in checked:
                checked[folder] = _is_delta_folder(folder)
            if checked[folder]:
                roots.add(folder)
                break
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return roots


def _is_delta_folder(folder: str) -> bool:
    if "://" not in folder:
        return os.path.isdir(os.path.join(folder, "_delta_log"))
    try:
        from featurelake.storage import is_delta_table

        return is_delta_table(folder)
    except Exception:
        return False


def check_source_paths(config: FeatureStoreConfig, group: str, paths: Sequence[str]) -> None:
    """VirtualizationQueryError when a DuckDB virtual query reads a Delta table outside the
    store and the configured `virtual_source_paths`."""
    roots = [store_root(config), *config.virtual_source_paths]
    allowed = [_resolved(r) for r in roots]
    outside = [
        p
        for p in paths
        if not any(
            _resolved(p) == a or _resolved(p).startswith(a.rstrip("/") + "/") for a in allowed
        )
    ]
    if outside:
        raise VirtualizationQueryError(
            f"The virtual query of group '{group}' reads Delta tables outside the store and "
            f"its configured source paths: {', '.join(outside)}.",
            fix="read tables under the store, or add their folder to the configuration key "
            "virtual_source_paths.",
            group=group,
            condition="SOURCE_PATH_NOT_ALLOWED",
            paths=outside,
        )


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _resolved(path: str) -> str:
    local = _local_path(path)
    return local if "://" in local else os.path.realpath(local)


def _local_path(path: str) -> str:
    """`file:/x` and `file:///x` as `/x`; other URIs unchanged."""
    if path.startswith("file://"):
        return path[len("file://") :] or "/"
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


def _function_path(function: Callable[..., Any]) -> str | None:
    """`module:qualname` when the function can be imported by that name, else None."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _import_function(definition: VirtualDefinition) -> QueryFunction | None:
    assert definition.function is not None
    module_name, _, qualname = definition.function.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target if callable(target) else None


def _is_spark_frame(value: Any) -> bool:
    return type(value).__module__.startswith("pyspark.sql") and type(value).__name__ == "DataFrame"


def _condition(error: BaseException) -> str:
    get = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    try:
        return str(get() or "") if get else ""
    except Exception:
        return ""


def _engine_message(error: BaseException) -> str:
    """The engine's message without JVM stack traces; parse errors keep their SQL excerpt."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    lines = text.splitlines()
    head = lines[0]
    if "== SQL ==" in text:
        excerpt = text[text.index("== SQL ==") :].split("\n\n")[0]
        return f"{head}\n{excerpt}"
    return head


def _excerpt(sql: str, line: int, position: int) -> str:
    """The query's line `line` (1-based) with a caret under `position` (0-based)."""
    lines = sql.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    return f"\n  {lines[line - 1]}\n  {' ' * position}^"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


__all__ = [
    "EXECUTORS",
    "VIRTUAL",
    "AnalysedQuery",
    "QueryExecutor",
    "SparkQueryExecutor",
    "VirtualDefinition",
    "VirtualQuery",
    "VirtualizedFeatureStore",
    "check_output",
    "create_query_executor",
]
