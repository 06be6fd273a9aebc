"""Reading a group's declared source: a Delta table's snapshot or its changes, then its query
and Python transform. Only DataFrame and SQL calls (Spark Connect safe)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurelake.errors import MaterializationError, first_line
from featurelake.gold import delta_ops
from featurelake.registry import TableLocation
from featurelake.schema.materialization import MaterializationSource

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
ADDED = ("insert", "update_postimage")


def source_location(table: str) -> TableLocation:
    """A path (anything with `/` or a scheme) or a catalog table name."""
    if "/" in table or ":" in table or "\\" in table:
        return TableLocation(path=table)
    return TableLocation(table_name=table)


def current_version(spark: SparkSession, location: TableLocation, group: str) -> int:
    """The newest Delta version of the source table (reads only its log; delta-rs answers
    for a path table without a Spark job)."""
    local = delta_ops.local_version(location)
    if local is not None:
        return local
    try:
        row = spark.sql(f"DESCRIBE HISTORY {location.sql_name} LIMIT 1").collect()[0]
    except Exception as error:
        raise MaterializationError(
            f"The source {location} of group '{group}' cannot be read as a Delta table: "
            f"{first_line(error)}",
            fix="point 'source.table' at an existing Delta table (path or catalog name).",
            group=group,
        ) from error
    return int(row["version"])


def _reader(spark: SparkSession, options: Mapping[str, str]) -> Any:
    reader = spark.read.format("delta")
    for key, value in options.items():
        reader = reader.option(key, value)
    return reader


def _load(reader: Any, location: TableLocation) -> DataFrame:
    return reader.table(location.table_name) if location.table_name else reader.load(location.path)


def read_snapshot(
    spark: SparkSession, location: TableLocation, version: int, options: Mapping[str, str]
) -> DataFrame:
    """Every row of the source table at `version`."""
    return _load(_reader(spark, options).option("versionAsOf", int(version)), location)


@dataclass(frozen=True)
class NetChanges:
    """Rows added to and removed from a source; `release()` frees their cached form."""

    added: DataFrame
    removed: DataFrame
    cached: DataFrame

    def release(self) -> None:
        self.cached.unpersist()

    def sizes(self) -> tuple[int, int]:
        """How many rows are added and removed, in one pass that also fills the cache."""
        from pyspark.sql import functions as F

        n = F.col("__fl_n")
        row = self.cached.agg(
            F.sum(F.when(n > 0, n).otherwise(0)).alias("added"),
            F.sum(F.when(n < 0, -n).otherwise(0)).alias("removed"),
        ).collect()[0]
        return int(row["added"] or 0), int(row["removed"] or 0)


def read_net_changes(
    spark: SparkSession,
    location: TableLocation,
    start: int,
    end: int,
    options: Mapping[str, str],
) -> NetChanges:
    """The rows added to and removed from the source between versions `start - 1` and `end`.

    Read from the Change Data Feed of versions `start..end` and netted as a multiset: a row
    inserted then deleted inside the range cancels out, an update is its old row removed and
    its new row added. The order of commits inside the range does not matter, so a row-by-row
    transform of the two sides gives exactly the change of the transformed table.
    """
    from pyspark.sql import functions as F

    reader = (
        _reader(spark, options)
        .option("readChangeFeed", "true")
        .option("startingVersion", int(start))
        .option("endingVersion", int(end))
    )
    changes = _load(reader, location)
    data = [c for c in changes.columns if c not in CDF_COLUMNS]
    sign = F.when(F.col("_change_type").isin(*ADDED), F.lit(1)).otherwise(F.lit(-1))
    row = F.struct(*[F.col(c) for c in data])
    netted = (
        changes.groupBy(F.sha2(F.to_json(row), 256).alias("__fl_row"))
        .agg(F.sum(sign).alias("__fl_n"), F.first(row).alias("__fl_value"))
        .where(F.col("__fl_n") != 0)
        .persist()  # read by both sides and by the write's passes: computed once
    )

    def side(condition: Any) -> DataFrame:
        copies = F.array_repeat(F.col("__fl_value"), F.abs(F.col("__fl_n")).cast("int"))
        return (
            netted.where(condition)
            .select(F.explode(copies).alias("__fl_value"))
            .select(*[F.col(f"__fl_value.{c}").alias(c) for c in data])
        )

    return NetChanges(side(F.col("__fl_n") > 0), side(F.col("__fl_n") < 0), netted)


def run_query(spark: SparkSession, query: str, source: DataFrame | None) -> DataFrame:
    """The source query; with a source frame, `{source}` in it names those rows."""
    if source is None:
        return spark.sql(query)
    if "{source}" not in query:
        raise MaterializationError(
            "The source query reads from a table but does not name its rows as {source}.",
            fix="write the query over '{source}', e.g. 'SELECT id AS customer_id, ... FROM "
            "{source}'.",
        )
    return spark.sql(query, source=source)


def load_transform(spec: str) -> Callable[[DataFrame], DataFrame]:
    """The function named by `module:function`; errors say what could not be found."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise MaterializationError(
            f"The source transform '{spec}' names the module '{module_name}', which cannot be "
            f"imported: {error}.",
            fix="install the module or add its folder to PYTHONPATH (spark-submit --py-files).",
        ) from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise MaterializationError(
            f"The module '{module_name}' has no function '{function_name}' (source transform "
            f"'{spec}').",
            fix=f"define it as 'def {function_name}(df): return df...' or correct the name.",
        )
    return function


def transform_rows(
    spark: SparkSession, source: MaterializationSource, rows: DataFrame | None
) -> DataFrame:
    """Apply the source's query, then its Python transform, to `rows` (None: the query alone)."""
    frame = rows
    if source.query is not None:
        frame = run_query(spark, source.query, rows)
    assert frame is not None, "a source without a table has a query"
    if source.transform is not None:
        result = load_transform(source.transform)(frame)
        if not hasattr(result, "columns") or not hasattr(result, "schema"):
            raise MaterializationError(
                f"The source transform '{source.transform}' returned "
                f"{type(result).__name__}, not a Spark DataFrame.",
                fix="return the transformed DataFrame from the function.",
            )
        frame = result
    return frame
