"""The Spark query executor: virtual queries in Spark SQL or DataFrame functions."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from featurelake.errors import (
    SchemaValidationError,
    VirtualizationQueryError,
)
from featurelake.schema import SqlType
from featurelake.session import is_connect_session, is_spark_frame
from featurelake.times import spark_utc
from featurelake.virtual.checks import (
    WRAP_PREFIX,
    check_single_query,
    delta_path_of,
    delta_roots,
    engine_message,
    error_condition,
    plan_roots,
    relation_names,
    sql_excerpt,
    wrap_sql,
)
from featurelake.virtual.deadline import deadline
from featurelake.virtual.executors import (
    AnalysedQuery,
    QueryExecutor,
    VirtualQuery,
    does_not_parse,
    session_of,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


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
            if not is_spark_frame(frame):
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
        condition = error_condition(error)
        text = str(error)
        message = engine_message(error)
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
                message = head + sql_excerpt(query.sql or "", line, pos)
            return does_not_parse(message, details)
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


def load_executor(spark: Any) -> SparkQueryExecutor:
    """The Spark executor on `spark` (a session, or a function returning one)."""
    return SparkQueryExecutor(session_of(spark))


@contextmanager
def spark_deadline(
    spark: SparkSession, seconds: float | None, *, what: str, group: str | None = None
) -> Iterator[None]:
    """Run the block's Spark jobs under a tag, cancelled after `seconds` (None: no limit); an
    interrupted block raises QueryTimeoutError (`virtual.deadline`).

    On a classic session the tag is a job tag of this thread (its tasks' threads are interrupted
    on cancel); over Spark Connect it is an operation tag the server interrupts.
    """
    if seconds is None:
        yield
        return
    tag = f"featurelake-deadline-{uuid.uuid4().hex[:12]}"
    if is_connect_session(spark):
        spark.addTag(tag)
        cancel: Callable[[], Any] = partial(spark.interruptTag, tag)
        untag: Callable[[], Any] = partial(spark.removeTag, tag)
    else:
        context = spark.sparkContext
        context.addJobTag(tag)
        context.setInterruptOnCancel(True)
        cancel = partial(context.cancelJobsWithTag, tag)
        untag = partial(context.removeJobTag, tag)
    try:
        with deadline(seconds, cancel, what=what, group=group):
            yield
    finally:
        untag()
