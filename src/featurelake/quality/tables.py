"""Reading Gold tables at a Delta version and writing side tables, for the quality layer.

The quality layer sits beside the engines and may not import them, so it reads Delta through the
plain DataFrame API (Spark Connect safe) at the locations the registry gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featurelake.errors import MaterializationError
from featurelake.registry import Registry, TableLocation
from featurelake.schema.model import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def resolve(registry: Registry, group: str | FeatureGroupSchema) -> FeatureGroupSchema:
    """A registered schema from a schema, `name` or `name@version`."""
    if isinstance(group, FeatureGroupSchema):
        return registry.get_group(group.name, group.version)
    name, _, version = str(group).partition("@")
    return registry.get_group(name, int(version) if version else None)


def read_version(
    spark: SparkSession, location: TableLocation, version: int | None = None
) -> DataFrame:
    """The Delta table at `location`, at `version` (time travel) or now."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    try:
        if location.table_name:
            return reader.table(location.table_name)
        assert location.path is not None
        return reader.load(location.path)
    except Exception as error:
        raise MaterializationError(
            f"Cannot read {location}" + (f" at Delta version {version}" if version else "") + ".",
            fix="write features to the group first, or pick a version shown by "
            "store.history(group).",
        ) from error


def appended_rows(spark: SparkSession, location: TableLocation, version: int) -> DataFrame:
    """The rows a commit inserted, from the table's change data feed (reads only the files of
    that commit)."""
    from pyspark.sql import functions as F

    reader = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", int(version))
        .option("endingVersion", int(version))
    )
    if location.table_name:
        changes = reader.table(location.table_name)
    else:
        assert location.path is not None
        changes = reader.load(location.path)
    return changes.where(F.col("_change_type") == "insert").drop(
        "_change_type", "_commit_version", "_commit_timestamp"
    )


def latest_version(spark: SparkSession, location: TableLocation) -> int:
    """The newest Delta version of a table (reads only the Delta log)."""
    from pyspark.sql import functions as F

    history = spark.sql(f"DESCRIBE HISTORY {location.sql_name} LIMIT 1")
    row = history.select(F.max("version").alias("v")).collect()[0]
    return int(row["v"])


def append_side_table(df: DataFrame, location: TableLocation) -> None:
    """Append rows to a side table (created on first use, schema may gain columns)."""
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if location.table_name:
        writer.saveAsTable(location.table_name)
    else:
        assert location.path is not None
        writer.save(location.path)
