"""Delta table operations of the Gold layer, written only with DataFrame and SQL calls.

No `delta.tables.DeltaTable` Python API: the same code runs on a classic session and over
Spark Connect (MERGE INTO, DESCRIBE HISTORY, RESTORE are SQL). User values reach SQL only as
DataFrames (temp views) or typed literals that featurelake formats itself.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from featurelake import storage
from featurelake.gold import commit_times
from featurelake.gold.merge_bounds import target_bounds
from featurelake.registry import TableLocation, quote_identifier
from featurelake.schema import INGESTED_AT, FeatureGroupSchema
from featurelake.times import sql_time_literal, utc_aware

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Session confs are shared by every thread of a session; commits tagged through the
# `userMetadata` conf (SQL MERGE has no per-statement option) hold this lock.
_SESSION_CONF_LOCK = threading.Lock()
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
GOLD_TABLE_PROPERTIES: dict[str, str] = {"delta.enableChangeDataFeed": "true"}
"""The properties of a new Gold table (delta-rs small writes create tables with them too)."""
DELETION_VECTORS = {"delta.enableDeletionVectors": "true"}
"""Added to them with `gold_deletion_vectors` (Spark creates those tables)."""


@dataclass(frozen=True)
class CommitInfo:
    """One Delta commit as DESCRIBE HISTORY shows it (`timestamp` naive UTC)."""

    version: int
    timestamp: datetime
    operation: str
    metrics: dict[str, str]
    user_metadata: str | None

    @property
    def rows_written(self) -> int:
        """Rows added or changed by the commit, from Delta's operation metrics."""
        metrics = self.metrics
        if "numTargetRowsInserted" in metrics:
            return int(metrics.get("numTargetRowsInserted", 0)) + int(
                metrics.get("numTargetRowsUpdated", 0)
            )
        return int(metrics.get("numOutputRows", 0)) - int(metrics.get("numCopiedRows", 0))


GOLD_FILE_ROWS = 1_000_000
"""Rows per file at most when a Gold table is rewritten whole (no shuffle: files are cut)."""


def local_table_exists(location: TableLocation) -> bool | None:
    """Whether a path table (local or on object storage) exists, answered by delta-rs without
    Spark (None when the table is a catalog name)."""
    path = _delta_rs_path(location)
    return None if path is None else storage.is_delta_table(path)


def table_exists(spark: SparkSession, location: TableLocation) -> bool:
    local = local_table_exists(location)
    if local is not None:
        return local
    if location.table_name:
        return bool(spark.catalog.tableExists(location.table_name))
    try:
        spark.sql(f"DESCRIBE DETAIL {location.sql_name}").collect()
        return True
    except Exception as error:  # Spark raises AnalysisException subclasses, classic or Connect
        if "DELTA_MISSING_DELTA_TABLE" in str(error) or "is not a Delta table" in str(error):
            return False
        if "PATH_NOT_FOUND" in str(error) or "doesn't exist" in str(error):
            return False
        raise


def create_table(
    spark: SparkSession,
    location: TableLocation,
    schema: FeatureGroupSchema,
    key_types: dict[str, str],
    *,
    deletion_vectors: bool = False,
) -> None:
    """Create the Gold table of a group (no-op when it exists), with Change Data Feed on, and
    with `deletion_vectors` those too (a MERGE or DELETE then marks the rows it replaces in a
    small vector beside their file instead of copying every other row of the file)."""
    parts = []
    for key in schema.entity_keys:
        parts.append(f"{quote_identifier(key)} {key_types[key]} NOT NULL")
    parts.append(f"{quote_identifier(schema.timestamp_key)} TIMESTAMP NOT NULL")
    for feature in schema.features:
        parts.append(f"{quote_identifier(feature.name)} {feature.data_type.simple_string()}")
    parts.append(f"{INGESTED_AT} TIMESTAMP")
    partitioned = ""
    if schema.partition_columns:
        partitioned = (
            " PARTITIONED BY (" + ", ".join(map(quote_identifier, schema.partition_columns)) + ")"
        )
    chosen = {**GOLD_TABLE_PROPERTIES, **(DELETION_VECTORS if deletion_vectors else {})}
    properties = ", ".join(f"'{k}' = '{v}'" for k, v in chosen.items())
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {location.sql_name} ({', '.join(parts)}) USING DELTA"
        f"{partitioned} TBLPROPERTIES ({properties})"
    )


def add_columns(spark: SparkSession, location: TableLocation, columns: dict[str, str]) -> None:
    """Add nullable columns in place (compatible schema evolution)."""
    if columns:
        spec = ", ".join(f"{quote_identifier(n)} {t}" for n, t in columns.items())
        spark.sql(f"ALTER TABLE {location.sql_name} ADD COLUMNS ({spec})")


def read(
    spark: SparkSession,
    location: TableLocation,
    *,
    version: int | None = None,
    timestamp: datetime | str | None = None,
) -> DataFrame:
    """The table, or the version / timestamp asked for (Delta time travel)."""
    reader = spark.read.format("delta")
    if timestamp is not None and version is None and _has_listable_log(location):
        version, timestamp = commit_times.version_at(str(location.path), timestamp), None
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    if timestamp is not None:
        value = (
            utc_aware(timestamp).isoformat(sep=" ")
            if isinstance(timestamp, datetime)
            else str(timestamp)
        )
        reader = reader.option("timestampAsOf", value)
    if location.table_name:
        if version is None and timestamp is None:
            return spark.read.table(location.table_name)
        return reader.table(location.table_name)
    return reader.load(location.path)


def history(
    spark: SparkSession, location: TableLocation, limit: int | None = None
) -> list[CommitInfo]:
    """Commits of the table, newest first."""
    suffix = f" LIMIT {int(limit)}" if limit else ""
    rows = spark.sql(f"DESCRIBE HISTORY {location.sql_name}{suffix}").collect()
    return [
        CommitInfo(
            version=int(row["version"]),
            timestamp=_naive_utc(row["timestamp"]),
            operation=row["operation"],
            metrics={str(k): str(v) for k, v in (row["operationMetrics"] or {}).items()},
            user_metadata=row["userMetadata"],
        )
        for row in rows
    ]


def _naive_utc(collected: datetime) -> datetime:
    """A timestamp Spark collected (naive, in this process's local zone) as naive UTC."""
    return collected.astimezone(UTC).replace(tzinfo=None)


def current_version(spark: SparkSession, location: TableLocation) -> int:
    return history(spark, location, limit=1)[0].version


def _has_listable_log(location: TableLocation) -> bool:
    """Whether featurelake lists the table's log itself (a local or S3 path table), so a time
    resolves to the version every engine reads (gold.commit_times)."""
    path = str(location.path or "")
    return (
        bool(path)
        and not location.table_name
        and (storage.is_local(path) or storage.is_object_store(path))
    )


def _delta_rs_path(location: TableLocation) -> str | None:
    """The path of a table delta-rs opens (a local folder or an object-store path, with
    delta-rs installed), else None."""
    if not _has_listable_log(location):
        return None
    try:
        import deltalake  # noqa: F401
    except ImportError:
        return None
    return str(location.path)


def _local_log_reader(location: TableLocation) -> Any:
    """A delta-rs table for a path table (fast log reads without Spark), else None."""
    path = _delta_rs_path(location)
    return None if path is None else storage.open_table(path)


def local_version(location: TableLocation) -> int | None:
    """The newest version of a path table read by delta-rs from its log (no Spark job), or
    None when delta-rs cannot answer (a catalog name, no table, a protocol it cannot open)."""
    path = _delta_rs_path(location)
    if path is None:
        return None
    try:
        return int(storage.open_table(path).version())
    except Exception:  # delta-rs' own errors: Spark answers (and explains) instead
        return None


def find_commit(spark: SparkSession, location: TableLocation, token: str) -> CommitInfo:
    """The commit tagged with `token` (searching the newest commits first)."""
    log = _local_log_reader(location)
    if log is not None:
        for entry in log.history(50):
            if entry.get("userMetadata") == token:
                return CommitInfo(
                    version=int(entry["version"]),
                    timestamp=datetime.fromtimestamp(entry["timestamp"] / 1000, UTC).replace(
                        tzinfo=None
                    ),
                    operation=str(entry.get("operation")),
                    metrics={
                        str(k): str(v) for k, v in (entry.get("operationMetrics") or {}).items()
                    },
                    user_metadata=token,
                )
    for limit in (20, None):
        for commit in history(spark, location, limit=limit):
            if commit.user_metadata == token:
                return commit
    raise LookupError(f"no commit tagged {token} in {location}")


def row_count(spark: SparkSession, location: TableLocation) -> int:
    """Rows in the current version, from the log's file statistics (no data scan)."""
    log = _local_log_reader(location)
    if log is not None:
        import pyarrow as pa

        actions = pa.table(log.get_add_actions(flatten=True))
        counts = actions.column("num_records").to_pylist() if actions.num_rows else []
        if all(c is not None for c in counts):
            return int(sum(counts)) - _deleted_rows(log)
    # Delta answers a plain count from the log's statistics too (metadata-only query).
    return int(read(spark, location).count())


def _deleted_rows(log: Any) -> int:
    """Rows that the deletion vectors of the current version mark deleted (their files'
    statistics still count them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "deletionVectors" not in (log.protocol().reader_features or ()):
        return 0
    vectors = pa.table(log.deletion_vectors())
    if not vectors.num_rows:
        return 0
    keep = pc.list_flatten(vectors.column("selection_vector"))
    return int(len(keep) - pc.sum(keep.cast(pa.int64())).as_py())


def new_token() -> str:
    return f"featurelake:{uuid.uuid4().hex}"


def append(df: DataFrame, location: TableLocation, token: str) -> None:
    writer = df.write.format("delta").mode("append").option("userMetadata", token)
    _save(writer, location)


def overwrite(
    df: DataFrame,
    location: TableLocation,
    token: str,
    replace_where: str | None = None,
    *,
    new_schema: bool = False,
) -> None:
    """Replace the whole table, or only the rows matching `replace_where` (atomic). With
    `new_schema`, a whole-table replace may also change the table's columns.

    A whole-table replace (a rebuild) writes files of at most `GOLD_FILE_ROWS` rows, cut in
    the order of the input's rows: a later MERGE then touches only the files holding the keys
    and times it changes, not a few huge ones."""
    writer = df.write.format("delta").mode("overwrite").option("userMetadata", token)
    if replace_where:
        writer = writer.option("replaceWhere", replace_where)
    else:
        writer = writer.option("maxRecordsPerFile", GOLD_FILE_ROWS)
    if new_schema:
        writer = writer.option("overwriteSchema", "true")
    _save(writer, location)


def _save(writer: Any, location: TableLocation) -> None:
    if location.table_name:
        writer.saveAsTable(location.table_name)
    else:
        writer.save(location.path)


@contextmanager
def _tagged_commits(spark: SparkSession, token: str) -> Iterator[None]:
    with _SESSION_CONF_LOCK:
        spark.conf.set(USER_METADATA_CONF, token)
        try:
            yield
        finally:
            spark.conf.unset(USER_METADATA_CONF)


def merge(
    spark: SparkSession,
    df: DataFrame,
    location: TableLocation,
    on_columns: list[str],
    token: str,
) -> None:
    """Upsert `df` into the table: rows equal on `on_columns` are replaced, others inserted."""
    view = f"_fl_merge_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(view)
    condition = " AND ".join(
        f"t.{quote_identifier(c)} = s.{quote_identifier(c)}" for c in on_columns
    )
    try:
        with _tagged_commits(spark, token):
            spark.sql(
                f"MERGE INTO {location.sql_name} t USING {view} s ON {condition} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            ).collect()
    finally:
        spark.catalog.dropTempView(view)


def merge_changes(
    spark: SparkSession,
    df: DataFrame,
    deletes: DataFrame,
    location: TableLocation,
    on_columns: list[str],
    token: str,
) -> None:
    """Upsert `df` and delete the rows matching `deletes` on `on_columns`, in one MERGE.

    A key present in both is upserted (its delete is dropped). The ON condition also bounds
    the target by the change's smallest and largest keys and event time (`merge_bounds`), so
    Delta reads and rewrites only the files that can hold a changed row.
    """
    from pyspark.sql import functions as F

    flag = "__fl_delete"
    types = {f.name: f.dataType for f in df.schema.fields}
    removed = deletes.select(*[F.col(c).cast(types[c]).alias(c) for c in on_columns]).distinct()
    removed = removed.join(df.select(*on_columns), on=on_columns, how="left_anti")
    filler = [F.lit(None).cast(types[c]).alias(c) for c in df.columns if c not in on_columns]
    source = df.withColumn(flag, F.lit(False)).unionByName(
        removed.select(*on_columns, *filler).withColumn(flag, F.lit(True))
    )
    # computed once (the bounds' pass fills the cache), read again by the MERGE
    source = source.persist()
    view = f"_fl_changes_{uuid.uuid4().hex}"
    columns = [quote_identifier(c) for c in df.columns]
    updates = ", ".join(f"t.{c} = s.{c}" for c in columns)
    values = ", ".join(f"s.{c}" for c in columns)
    try:
        condition = " AND ".join(
            [f"t.{quote_identifier(c)} = s.{quote_identifier(c)}" for c in on_columns]
            + target_bounds(source, on_columns)
        )
        source.createOrReplaceTempView(view)
        with _tagged_commits(spark, token):
            spark.sql(
                f"MERGE INTO {location.sql_name} t USING {view} s ON {condition} "
                f"WHEN MATCHED AND s.{flag} THEN DELETE "
                f"WHEN MATCHED THEN UPDATE SET {updates} "
                f"WHEN NOT MATCHED AND NOT s.{flag} THEN INSERT ({', '.join(columns)}) "
                f"VALUES ({values})"
            ).collect()
    finally:
        spark.catalog.dropTempView(view)
        source.unpersist()


def set_properties(
    spark: SparkSession, location: TableLocation, properties: dict[str, str], token: str
) -> None:
    """Set table properties in one commit tagged with `token`."""
    pairs = ", ".join(
        f"'{k.replace(chr(39), '')}' = '{v.replace(chr(39), '')}'" for k, v in properties.items()
    )
    with _tagged_commits(spark, token):
        spark.sql(f"ALTER TABLE {location.sql_name} SET TBLPROPERTIES ({pairs})")


def restore(spark: SparkSession, location: TableLocation, version: int) -> None:
    spark.sql(f"RESTORE TABLE {location.sql_name} TO VERSION AS OF {int(version)}").collect()


timestamp_literal = sql_time_literal
