"""A micro-batch small enough for the driver: one Spark job, checks in Arrow, online + Gold.

A streaming micro-batch of a few thousand rows costs Spark more in job planning than in work:
validating it inside the Gold MERGE, then reading it again for the online push, takes several
jobs. Here the batch (after the source's query and transform) is collected once as Arrow and
checked on the driver with the checks of every write (`gold.arrow_checks`: the same column
types, row rules and `SchemaValidationError`). Then, at once, its latest rows are pushed online
(in a thread of `streaming`) and it is merged into Gold: by delta-rs when the table allows a
small write (`gold.small_writes`; the stream lets those take its whole batch unless
`small_write_max_rows` is 0), otherwise by Spark from the same Arrow rows. Online and Gold
receive the same rows, whatever the source's transform does.

Freshness does not wait for the Gold commit, and that is safe: nothing reaches either store
before the whole batch passed its checks, the online store keeps the value of the newest event
time (a replayed batch changes nothing there), and the Gold MERGE on keys + event time is
idempotent. A batch whose Gold commit fails stops the stream; its rows may already be served
online, and the restarted stream (which reads the batch again from its checkpoint) writes them
to Gold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featurelake.gold import delta_ops, small_writes
from featurelake.gold.arrow_checks import check_rows, conform
from featurelake.registry import TableLocation
from featurelake.schema import FeatureGroupSchema, SqlType
from featurelake.schema.validation import rule_specs

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

DRIVER_MAX_ROWS = 100_000
"""Default `driver_max_rows` of `start_stream`: micro-batches up to this many rows are
collected once and checked on the driver (0: every batch stays on Spark)."""


def collect_small(frame: DataFrame, max_rows: int) -> pa.Table | None:
    """The rows of `frame` as Arrow when there are at most `max_rows`, else None (then at most
    `max_rows + 1` rows were read, in one job for a batch of one partition)."""
    if max_rows <= 0:
        return None
    table = frame.limit(max_rows + 1).toArrow()
    return table if table.num_rows <= max_rows else None


def existing_key_types(
    spark: SparkSession, location: TableLocation, schema: FeatureGroupSchema
) -> dict[str, SqlType]:
    """The entity key types of the group's Gold table (empty when it does not exist yet):
    read by delta-rs for a path table, from Spark's schema for a catalog table."""
    if location.path is not None:
        return small_writes.existing_key_types(str(location.path), schema)
    if not delta_ops.table_exists(spark, location):
        return {}
    fields = {f.name: f.dataType for f in delta_ops.read(spark, location).schema.fields}
    return {k: SqlType.from_spark(fields[k]) for k in schema.entity_keys if k in fields}


def checked_rows(
    rows: pa.Table, schema: FeatureGroupSchema, key_types: dict[str, SqlType]
) -> pa.Table:
    """The batch conformed to the group's columns and types, its row rules (and unique keys +
    event time, as a merge requires) checked: raises SchemaValidationError like a write."""
    batch = conform(rows, schema, key_types)
    check_rows(batch, schema, rule_specs(schema, unique_key_time=True))
    return batch


def gold_input(
    spark: SparkSession,
    location: TableLocation,
    schema: FeatureGroupSchema,
    batch: pa.Table,
    *,
    small_write_max_rows: int,
    hooks: Sequence[Any],
    deletion_vectors: bool,
) -> Any:
    """What to hand to `write_features`: the Arrow batch when delta-rs will commit it (a small
    write), else a Spark DataFrame of the same rows."""
    if small_writes.is_small(batch, small_write_max_rows) and (
        small_writes.spark_needed(
            location, schema, "merge", hooks, deletion_vectors=deletion_vectors
        )
        is None
    ):
        return batch
    return spark.createDataFrame(batch)
