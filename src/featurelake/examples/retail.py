"""Deterministic data for the example retail groups (`conf/features/*.yaml`).

Same arguments, same rows: data is generated with seeded Spark expressions over a fixed number
of partitions, so runs and machines agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

START = datetime(2024, 1, 1)
PARTITIONS = 4
SEGMENTS = ["bronze", "silver", "gold", "platinum"]
COUNTRIES = ["DE", "FR", "NL", "ES", "IT"]
CATEGORIES = ["grocery", "fashion", "electronics", "home", "toys"]


def _pick(column_seed: int, options: list[str], salt: str) -> Column:
    from pyspark.sql import functions as F

    index = (F.abs(F.hash(F.col("id"), F.lit(salt), F.lit(column_seed))) % len(options)).cast("int")
    return F.element_at(F.array(*[F.lit(o) for o in options]), index + 1)


def _customer_grid(
    spark: SparkSession, customers: int, periods: int
) -> tuple[DataFrame, Column, Column]:
    """One row per customer and period: the rows, the customer (1 to `customers`) and the
    period (0 to `periods - 1`) of each."""
    from pyspark.sql import functions as F

    rows = spark.range(0, customers * periods, numPartitions=PARTITIONS)
    return rows, (F.col("id") % customers) + 1, (F.col("id") / customers).cast("int")


def customer_profiles(
    spark: SparkSession, customers: int = 1_000, snapshots: int = 3, seed: int = 7
) -> DataFrame:
    """One profile row per customer and snapshot (every 30 days from 2024-01-01)."""
    from pyspark.sql import functions as F

    rows, customer, snapshot = _customer_grid(spark, customers, snapshots)
    base_age = 18 + (F.abs(F.hash(customer, F.lit(seed))) % 60)
    return rows.select(
        customer.cast("bigint").alias("customer_id"),
        (F.lit(START) + F.make_interval(days=snapshot * 30)).alias("event_timestamp"),
        base_age.cast("int").alias("age"),
        (F.abs(F.hash(customer, F.lit(seed + 1))) % 900 + snapshot * 30)
        .cast("int")
        .alias("tenure_days"),
        _pick(seed, SEGMENTS, "segment").alias("segment"),
        F.element_at(
            F.array(*[F.lit(c) for c in COUNTRIES]),
            (F.abs(F.hash(customer, F.lit(seed + 2))) % len(COUNTRIES)).cast("int") + 1,
        ).alias("country"),
        (F.rand(seed) > 0.2).alias("is_active"),
        F.round(F.rand(seed + 3) * 5_000 + snapshot * 100, 2).alias("lifetime_value"),
    )


def transaction_aggregates(
    spark: SparkSession, customers: int = 1_000, days: int = 60, seed: int = 11
) -> DataFrame:
    """Daily aggregates for about half the customers on any day, over `days` days."""
    from pyspark.sql import functions as F

    rows, customer, day = _customer_grid(spark, customers, days)
    active = F.rand(seed) < 0.5
    count = (F.rand(seed + 1) * 6).cast("bigint")
    frame = rows.where(active).select(
        customer.cast("bigint").alias("customer_id"),
        (F.lit(START) + F.make_interval(days=day, hours=F.lit(23))).alias("event_timestamp"),
        count.alias("txn_count_7d"),
        F.round(count * (F.rand(seed + 2) * 80 + 5), 2).alias("txn_amount_7d"),
        F.when(count > 0, F.round(F.rand(seed + 3) * 70 + 10, 2)).alias("avg_basket_30d"),
        _pick(seed, CATEGORIES, "category").alias("last_category"),
        (F.abs(F.hash(customer, day)) % 7).cast("int").alias("days_since_last_order"),
    )
    return frame


def label_events(
    spark: SparkSession, customers: int = 1_000, rows: int = 2_000, seed: int = 23
) -> DataFrame:
    """Entity rows for a churn training set: customer, observation time, label."""
    from pyspark.sql import functions as F

    frame = spark.range(0, rows, numPartitions=PARTITIONS)
    return frame.select(
        ((F.abs(F.hash(F.col("id"), F.lit(seed))) % customers) + 1)
        .cast("bigint")
        .alias("customer_id"),
        (
            F.lit(START + timedelta(days=10))
            + F.make_interval(
                days=(F.rand(seed) * 80).cast("int"), hours=(F.rand(seed + 1) * 24).cast("int")
            )
        ).alias("event_timestamp"),
        (F.rand(seed + 2) < 0.15).alias("churned"),
    )
