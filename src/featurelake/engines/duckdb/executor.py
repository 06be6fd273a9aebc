"""DuckDB as a query engine over the store's Delta tables (the `[duckdb]` extra).

`DuckDBQueryExecutor` runs virtual queries written in DuckDB SQL. A query reads Delta tables
with `delta_scan('/path/to/table')` (the call DuckDB's own delta extension offers); featurelake
resolves each one through delta-rs (`gold.delta_reader`: the table's current version, its log
honoured) and hands it to DuckDB as Arrow, so no DuckDB extension is downloaded. Like the Spark
executor, the query runs inside a CTE, so only a query parses (no DDL, no second statement), and
it is analysed at definition time without reading data (each source is bound as an empty table
of its schema).

`connect()` gives the DuckDB connections featurelake uses: UTC, no extension auto-install.
Timestamps are naive UTC on both sides, as in Spark with a UTC session.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from featurelake.errors import (
    FeatureStoreError,
    VirtualizationQueryError,
)
from featurelake.gold.delta_reader import open_snapshot, quote, read_arrow
from featurelake.plan.engine_choice import duckdb_installed, require_duckdb
from featurelake.schema import DataType, SqlType
from featurelake.virtual.checks import (
    WRAP_PREFIX,
    engine_message,
    local_path,
    sql_excerpt,
    wrap_sql,
)
from featurelake.virtual.deadline import deadline
from featurelake.virtual.executors import AnalysedQuery, QueryExecutor, VirtualQuery, does_not_parse

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

SparkProvider = Callable[[], "SparkSession"]

DELTA_SCAN = "delta_scan"


def connect(*, external_access: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection: UTC session, no extension downloads; without
    `external_access`, no file or network access either (only registered tables)."""
    duckdb = require_duckdb()
    connection = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "enable_external_access": external_access,
        }
    )
    connection.execute("SET TimeZone = 'UTC'")
    return connection


class DuckDBQueryExecutor(QueryExecutor):
    """DuckDB SQL over Delta tables read by delta-rs; results as Arrow (or a Spark DataFrame
    built from them when a Spark read needs the group)."""

    name = "duckdb"

    def __init__(self, spark: SparkProvider | SparkSession | None = None) -> None:
        super().__init__()
        require_duckdb()
        self._spark = spark
        # Virtual queries read only the Delta tables featurelake binds (delta_scan): no files.
        self._connection = connect(external_access=False)
        self._connection_lock = threading.Lock()

    # -- what the base class calls ---------------------------------------------------------------

    def _analyse(self, query: VirtualQuery) -> AnalysedQuery:
        sql = _sql_of(query)
        with self._cursor() as cursor:
            text, paths = bind_delta_scans(cursor, sql, empty=True)
            relation = cursor.sql(text)
            schema = relation.limit(0).to_arrow_table().schema
        columns = []
        for f in schema:
            try:
                columns.append((f.name, sql_type_from_arrow(f.type)))
            except ValueError as error:
                raise VirtualizationQueryError(
                    f"The query's column '{f.name}' has the DuckDB type {f.type}, which "
                    "featurelake cannot store.",
                    fix="cast it to a supported type (INTEGER, BIGINT, DOUBLE, VARCHAR, "
                    "TIMESTAMP, DATE, DECIMAL(p,s), lists, maps or structs of them).",
                    column=f.name,
                ) from error
        return AnalysedQuery(
            columns=tuple(columns),
            sources=tuple(f"{DELTA_SCAN}('{p}')" for p in paths),
            source_paths=tuple(sorted(set(paths))),
        )

    def _execute(self, query: VirtualQuery) -> DataFrame:
        table = self._arrow(query)
        spark = self._spark() if callable(self._spark) else self._spark
        if spark is None:
            from featurelake.session import get_spark

            spark = get_spark()
        return spark.createDataFrame(table)

    def execute_arrow(self, group: str, query: VirtualQuery) -> pa.Table:
        """Every row the query yields, as an Arrow table (no Spark)."""
        return self._call("execute", group, query, lambda: self._arrow(query, group))

    def _arrow(self, query: VirtualQuery, group: str | None = None) -> pa.Table:
        sql = _sql_of(query)
        what = f"the virtual query of group '{group}'" if group else "the virtual query"
        with self._cursor() as cursor:
            text, _ = bind_delta_scans(cursor, sql, empty=False)
            with deadline(self.timeout_seconds, cursor.interrupt, what=what, group=group):
                return cursor.sql(text).to_arrow_table()

    def _describe_error(
        self, error: BaseException, query: VirtualQuery
    ) -> tuple[str, str, str, dict[str, Any]]:
        kind = type(error).__name__
        message = engine_message(error)
        if isinstance(error, FeatureStoreError):
            return ("cannot read its sources", error.message, error.fix or "", error.details)
        if kind == "ParserException":
            details: dict[str, Any] = {"condition": "PARSE_SYNTAX_ERROR"}
            near = re.search(r'at or near "(.+?)"', str(error))
            if near:
                details["near"] = near[1]
            position = _position(str(error), query.sql or "")
            if position is not None:
                details["line"], details["position"] = position
                message += sql_excerpt(query.sql or "", *position)
            return does_not_parse(message, details)
        if kind == "PermissionException":
            return (
                "reads files directly",
                message,
                "read Delta tables with delta_scan('/path/to/table') only; DuckDB virtual "
                "queries have no file or network access.",
                {"condition": "EXTERNAL_ACCESS_DENIED"},
            )
        if kind == "CatalogException":
            name = re.search(r"with name (\S+) does not exist", str(error))
            return (
                "references a table or view that does not exist",
                message,
                "read Delta tables with delta_scan('/path/to/table'); DuckDB virtual queries "
                "have no catalog of named tables.",
                {"condition": "TABLE_OR_VIEW_NOT_FOUND", "table": name[1] if name else None},
            )
        if kind == "BinderException":
            name = re.search(r'column "([^"]+)" not found', str(error))
            candidates = re.search(r"Candidate bindings: .*", str(error))
            if candidates:
                message += f" ({candidates[0]})"
            return (
                "references a column that does not exist",
                message,
                "use one of the candidate columns DuckDB names above.",
                {"condition": "UNRESOLVED_COLUMN", "column": name[1] if name else None},
            )
        return (
            "failed",
            message,
            "correct the query (DuckDB's message above names the problem).",
            {"condition": kind},
        )

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connection_lock:
            cursor = self._connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()


def _sql_of(query: VirtualQuery) -> str:
    if query.sql is None:
        raise VirtualizationQueryError(
            "A DuckDB virtual query is SQL text; a Python query function needs the Spark engine.",
            fix="pass DuckDB SQL reading delta_scan('/path/to/table'), or define the group with "
            "engine='spark'.",
        )
    return wrap_sql(query.sql)


def bind_delta_scans(
    connection: duckdb.DuckDBPyConnection, sql: str, *, empty: bool
) -> tuple[str, list[str]]:
    """Replace each `delta_scan('<path>')` of `sql` by a view of that Delta table (its current
    version; only its schema when `empty`), registered on `connection`. Returns the rewritten
    SQL and the table paths.

    The call is found with DuckDB's tokenizer, so text in comments and strings is left alone.
    """
    duckdb = require_duckdb()
    tokens = duckdb.tokenize(sql)
    kinds = duckdb.token_type
    starts = [start for start, _ in tokens] + [len(sql)]

    def text(i: int) -> str:
        return sql[starts[i] : starts[i + 1]].strip() if i < len(tokens) else ""

    pieces: list[str] = []
    paths: list[str] = []
    views: dict[str, str] = {}
    cursor = 0
    for i, (start, kind) in enumerate(tokens):
        if kind != kinds.identifier or text(i).lower() != DELTA_SCAN or i + 3 >= len(tokens):
            continue
        if text(i + 1) != "(" or tokens[i + 2][1] != kinds.string_const or text(i + 3) != ")":
            continue
        literal = text(i + 2)
        path = _table_path(literal[1:-1].replace("''", "'"))
        if path not in views:
            views[path] = _register_delta(connection, path, empty=empty)
            paths.append(path)
        pieces.append(sql[cursor:start])
        pieces.append(views[path] + " ")
        cursor = starts[i + 4]
    pieces.append(sql[cursor:])
    return "".join(pieces), paths


def _table_path(text: str) -> str:
    path = local_path(text)
    if "://" not in path:
        path = os.path.abspath(path)
    return path.rstrip("/") or "/"


def _register_delta(connection: duckdb.DuckDBPyConnection, path: str, *, empty: bool) -> str:
    """Register the Delta table at `path` on `connection`; the quoted view name."""
    snapshot = open_snapshot(path)
    table = snapshot.arrow_schema().empty_table() if empty else read_arrow(snapshot)
    name = f"_fl_delta_{uuid.uuid4().hex[:12]}"
    connection.register(name, table)
    return quote(name)


def _position(message: str, sql: str) -> tuple[int, int] | None:
    """(line, position) of DuckDB's caret in the original query, from its `LINE n:` excerpt."""
    match = re.search(r"LINE (\d+): (.*)\n(\s*)\^", message)
    if match is None:
        return None
    line = int(match[1])
    position = len(match[3]) - len(f"LINE {match[1]}: ")
    if line == 1:
        position -= len(WRAP_PREFIX)
    return line, max(position, 0)


# -- types ------------------------------------------------------------------------------------


def sql_type_from_arrow(kind: pa.DataType) -> SqlType:
    """The featurelake type of an Arrow type (as DuckDB returns it); ValueError otherwise."""
    import pyarrow as pa

    t = pa.types
    if t.is_int8(kind) or t.is_int16(kind) or t.is_int32(kind):
        return SqlType(DataType.INT)
    if t.is_uint8(kind) or t.is_uint16(kind):
        return SqlType(DataType.INT)
    if t.is_int64(kind) or t.is_uint32(kind):
        return SqlType(DataType.BIGINT)
    if t.is_float32(kind):
        return SqlType(DataType.FLOAT)
    if t.is_float64(kind):
        return SqlType(DataType.DOUBLE)
    if t.is_decimal(kind) and kind.precision <= 38:
        return SqlType(DataType.DECIMAL, precision=kind.precision, scale=kind.scale)
    if t.is_string(kind) or t.is_large_string(kind) or t.is_string_view(kind):
        return SqlType(DataType.STRING)
    if t.is_boolean(kind):
        return SqlType(DataType.BOOLEAN)
    if t.is_timestamp(kind):
        return SqlType(DataType.TIMESTAMP)
    if t.is_date(kind):
        return SqlType(DataType.DATE)
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
        return SqlType(DataType.ARRAY, element=sql_type_from_arrow(kind.value_type))
    if t.is_map(kind):
        return SqlType(
            DataType.MAP,
            key=sql_type_from_arrow(kind.key_type),
            value=sql_type_from_arrow(kind.item_type),
        )
    if t.is_struct(kind):
        return SqlType(
            DataType.STRUCT,
            fields=tuple(
                (kind.field(i).name, sql_type_from_arrow(kind.field(i).type))
                for i in range(kind.num_fields)
            ),
        )
    raise ValueError(f"unsupported Arrow type {kind}")


def duckdb_type(kind: SqlType) -> str:
    """The DuckDB SQL name of a featurelake type (for CAST)."""
    atomic = {
        DataType.INT: "INTEGER",
        DataType.BIGINT: "BIGINT",
        DataType.FLOAT: "FLOAT",
        DataType.DOUBLE: "DOUBLE",
        DataType.STRING: "VARCHAR",
        DataType.BOOLEAN: "BOOLEAN",
        DataType.TIMESTAMP: "TIMESTAMP",
        DataType.DATE: "DATE",
    }
    return kind.fold(
        lambda t: (
            f"DECIMAL({t.precision},{t.scale})" if t.kind is DataType.DECIMAL else atomic[t.kind]
        ),
        lambda element: f"{element}[]",
        lambda key, value: f"MAP({key}, {value})",
        lambda fields: "STRUCT(" + ", ".join(f"{quote(name)} {t}" for name, t in fields) + ")",
    )


def load_executor(spark: SparkProvider | SparkSession | None) -> DuckDBQueryExecutor:
    """The `duckdb` entry of `EXECUTORS`."""
    return DuckDBQueryExecutor(spark)


__all__ = [
    "DELTA_SCAN",
    "DuckDBQueryExecutor",
    "bind_delta_scans",
    "connect",
    "duckdb_installed",
    "duckdb_type",
    "require_duckdb",
    "sql_type_from_arrow",
]
