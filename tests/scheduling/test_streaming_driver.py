"""The driver path of a streaming micro-batch: collecting it, its checks in Arrow."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from featurelake.errors import SchemaValidationError
from featurelake.scheduling.stream_driver import checked_rows, collect_small
from featurelake.schema import DataType, SqlType


def _batch(kit: SimpleNamespace, ids: list[int | None], times: list[int]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "event_timestamp": [kit.rows([t])[0][1] for t in times],
            "spend": [1.5] * len(ids),
            "country": ["FR"] * len(ids),
        }
    )


@pytest.mark.spark
def test_collect_small_reads_a_batch_of_at_most_max_rows(spark: SparkSession) -> None:
    frame = spark.range(5).selectExpr("id AS customer_id")
    table = collect_small(frame, 5)
    assert table is not None and table.column("customer_id").to_pylist() == [0, 1, 2, 3, 4]
    assert collect_small(frame, 4) is None  # larger than the limit: the batch stays on Spark
    assert collect_small(frame, 0) is None  # 0 turns the driver path off


def test_checked_rows_conform_types_and_refuse_what_a_merge_refuses(
    kit: SimpleNamespace,
) -> None:
    schema = kit.group(None)
    good = _batch(kit, [1, 2], [1, 2]).cast(
        pa.schema(
            [
                ("customer_id", pa.int32()),  # widened to the table's BIGINT key
                ("event_timestamp", pa.timestamp("us")),
                ("spend", pa.float64()),
                ("country", pa.string()),
            ]
        )
    )
    checked = checked_rows(good, schema, {"customer_id": SqlType(DataType.BIGINT)})
    assert checked.schema.field("customer_id").type == pa.int64()
    assert checked.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")

    with pytest.raises(SchemaValidationError, match="customer_id"):
        checked_rows(_batch(kit, [1, None], [1, 2]), schema, {})
    # the same key and event time twice in one batch: a merge could not tell which row wins
    with pytest.raises(SchemaValidationError, match="must be unique within a merge batch"):
        checked_rows(_batch(kit, [1, 1], [3, 3]), schema, {})
    with pytest.raises(SchemaValidationError, match="spend"):
        checked_rows(_batch(kit, [1], [1]).drop_columns(["spend"]), schema, {})
