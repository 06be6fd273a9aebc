"""A sync's Gold reads with Spark: big tables, catalog tables, and pushes from executors.

`latest_per_entity` is one aggregation over the rows. Its result goes to the online store
either from Spark's executors (`push_from_executors`: each task encodes its partition's Arrow
batches and writes them itself, in parallel, nothing collected; for stores whose connection
can travel, Redis) or through the driver (`push_from_driver`: one hash bucket of entities at a
time, the next bucket computed while the current one is written). Only DataFrame and SQL calls
are used (Spark Connect works); the executors' Python function is `online.remote`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from loguru import logger

from featurelake.errors import MaterializationError, OnlineStoreError, first_line
from featurelake.online.arrow_rows import INGESTED_COLUMN, TS_COLUMN
from featurelake.online.base import RemoteStore
from featurelake.online.remote import PROBE_SCHEMA, PUSH_SCHEMA, probe_partition, push_partition
from featurelake.online.sync_history import HISTORY_WINDOW, Commit, commit
from featurelake.schema import INGESTED_AT, DataType, FeatureGroupSchema

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.registry import TableLocation

CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
_READY: WeakKeyDictionary[Any, dict[RemoteStore, bool]] = WeakKeyDictionary()


def history(
    spark: SparkSession, location: TableLocation, schema: FeatureGroupSchema
) -> list[Commit]:
    """The newest `HISTORY_WINDOW` commits, newest first (the first is the current version)."""
    try:
        rows = spark.sql(f"DESCRIBE HISTORY {location.sql_name} LIMIT {HISTORY_WINDOW}").collect()
    except Exception as error:
        text = str(error)
        markers = ("DELTA_MISSING_DELTA_TABLE", "is not a Delta table", "PATH_NOT_FOUND")
        if any(m in text for m in (*markers, "doesn't exist", "TABLE_OR_VIEW_NOT_FOUND")):
            raise MaterializationError(
                f"Group '{schema.name}' v{schema.version} has no data yet ({location}), so "
                "there is nothing to sync online.",
                fix=f"write features first: store.write_features('{schema.name}', df).",
                group=schema.name,
            ) from error
        raise
    return [
        commit(r["version"], r["operation"], r["operationParameters"], r["operationMetrics"])
        for r in rows
    ]


def table_size(spark: SparkSession, location: TableLocation) -> int:
    """Bytes of the table now, from `DESCRIBE DETAIL`."""
    rows = spark.sql(f"DESCRIBE DETAIL {location.sql_name}").collect()
    return int(rows[0]["sizeInBytes"] or 0)


def read(spark: SparkSession, location: TableLocation, *, version: int) -> DataFrame:
    return _load(spark.read.format("delta").option("versionAsOf", version), location)


def changes(
    spark: SparkSession, location: TableLocation, start: Any, current: int
) -> tuple[DataFrame, DataFrame]:
    """(inserted and updated rows, every change row) of the change feed from `start`."""
    from pyspark.sql import functions as F

    reader = spark.read.format("delta").option("readChangeFeed", "true")
    reader = reader.option("endingVersion", current)
    if isinstance(start, int):
        reader = reader.option("startingVersion", int(start))
    else:
        reader = reader.option("startingTimestamp", start.isoformat(sep=" "))
    feed = _load(reader, location)
    change = F.col("_change_type")
    return feed.where(change.isin("insert", "update_postimage")).drop(*CDF_COLUMNS), feed


def _load(reader: Any, location: TableLocation) -> DataFrame:
    if location.table_name:
        return reader.table(location.table_name)
    return reader.load(location.path)


def latest_per_entity(frame: DataFrame, schema: FeatureGroupSchema) -> DataFrame:
    """A latest-rows frame (`online.arrow_rows`): keys, event and ingestion time (epoch us)
    and the features of each entity's latest row.

    Latest = greatest event time, ties broken by the greatest `_ingested_at` (as offline).
    Timestamp features come as epoch microseconds, so no time zone is applied on the way.
    """
    from pyspark.sql import functions as F

    present = set(frame.columns)
    ts = schema.timestamp_key
    ingested = F.col(INGESTED_AT) if INGESTED_AT in present else F.lit(None).cast("timestamp")
    features = [
        (F.col(f.name) if f.name in present else F.lit(None).cast(f.data_type.simple_string()))
        for f in schema.features
    ]
    packed = F.struct(
        F.col(ts).alias("ts"),
        ingested.alias("ing"),
        *[column.alias(f"f{i}") for i, column in enumerate(features)],
    )
    latest = frame.groupBy(*schema.entity_keys).agg(
        F.max_by(packed, F.struct(F.col(ts), ingested)).alias("_latest")
    )
    columns = [F.col(k) for k in schema.entity_keys]
    columns.append(F.unix_micros(F.col("_latest.ts")).alias(TS_COLUMN))
    columns.append(F.unix_micros(F.col("_latest.ing")).alias(INGESTED_COLUMN))
    for i, feature in enumerate(schema.features):
        value = F.col(f"_latest.f{i}")
        if feature.data_type.kind is DataType.TIMESTAMP:
            value = F.unix_micros(value)
        columns.append(value.alias(feature.name))
    return latest.select(*columns)


def buckets(size_bytes: int, chunk_bytes: int) -> int:
    """How many entity buckets keep each driver fetch near `chunk_bytes`."""
    return max(1, math.ceil(size_bytes / chunk_bytes))


def push_from_driver(
    latest: DataFrame,
    schema: FeatureGroupSchema,
    write: Callable[[pa.Table], None],
    chunks: int,
) -> float:
    """Fetch a latest-rows frame as Arrow, one hash bucket of entities at a time, and `write`
    each; the next bucket is computed while the current one is written. Each bucket is its own
    Spark job whose filter on the entity keys is pushed into the scan, so the driver holds at
    most two buckets. Returns the seconds spent waiting for Spark."""
    from pyspark.sql import functions as F

    keys = [F.col(k) for k in schema.entity_keys]

    def fetch(bucket: int) -> pa.Table:
        part = latest
        if chunks > 1:
            part = latest.where(F.pmod(F.xxhash64(*keys), F.lit(chunks)) == bucket)
        return part.toArrow()

    waited = 0.0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="featurelake-sync") as pool:
        future = pool.submit(fetch, 0)
        for bucket in range(chunks):
            started = time.perf_counter()
            table = future.result()
            waited += time.perf_counter() - started
            if bucket + 1 < chunks:
                future = pool.submit(fetch, bucket + 1)
            write(table)
    return waited


def push_from_executors(
    latest: DataFrame, schema: FeatureGroupSchema, remote: RemoteStore, force: bool
) -> tuple[int, int, int, float]:
    """Write a latest-rows frame from the executors, each task its own partition; returns
    (written, rejected, tasks, seconds the tasks spent writing)."""
    from pyspark.errors import PythonException
    from pyspark.sql import functions as F

    push = partial(push_partition, remote=remote, schema=schema, force=force)
    try:
        (row,) = (
            latest.mapInArrow(push, PUSH_SCHEMA)
            .agg(
                F.sum("written").alias("written"),
                F.sum("rejected").alias("rejected"),
                F.count(F.lit(1)).alias("tasks"),
                F.sum("seconds").alias("seconds"),
            )
            .collect()
        )
    except PythonException as error:  # a write failed; errors of reading Gold stay as they are
        reason = _worker_error(error)
        raise OnlineStoreError(
            f"Writing group '{schema.name}' to the online store from Spark's executors "
            f"failed: {reason}",
            fix="check that the executors reach the online store (online_url) and run "
            "featurelake; sync_to_online(..., engine='spark') writes from the driver instead.",
            group=schema.name,
        ) from error
    return (
        int(row["written"] or 0),
        int(row["rejected"] or 0),
        int(row["tasks"]),
        float(row["seconds"] or 0.0),
    )


def executors_ready(spark: SparkSession, remote: RemoteStore) -> bool:
    """Whether Spark's Python workers import featurelake and reach the store: one small job
    per session and store, remembered. When not, the sync writes from the driver and says why."""
    known = _READY.setdefault(spark, {})
    if remote in known:
        return known[remote]
    probe = partial(probe_partition, remote=remote)
    try:
        spark.range(1, numPartitions=1).mapInArrow(probe, PROBE_SCHEMA).collect()
        ready = True
    except Exception as error:
        logger.warning(
            "online sync: Spark's executors cannot write to the online store ({}); syncs "
            "write from the driver. Give the executors featurelake and access to the store "
            "(PYSPARK_PYTHON, online_url) to write from them in parallel.",
            _worker_error(error),
        )
        ready = False
    known[remote] = ready
    return ready


def _worker_error(error: BaseException) -> str:
    """The last line of a Python worker's traceback in a Spark error, or its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or "Exception" in line.split(":", 1)[0]:
            return line[:300]
    return first_line(error)[:300]
