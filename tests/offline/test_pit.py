"""Point-in-time joins, checked against an independent pandas `merge_asof` reference."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurelake.engines.spark.pit import PitSource, point_in_time_join
from featurelake.errors import PointInTimeError

pytestmark = pytest.mark.spark

BASE = datetime(2024, 1, 1)
HOUR = timedelta(hours=1)

ENTITY_SCHEMA = T.StructType(
    [
        T.StructField("row_id", T.LongType()),
        T.StructField("customer_id", T.LongType()),
        T.StructField("store_id", T.StringType()),
        T.StructField("region", T.StringType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("label", T.DoubleType()),
    ]
)
CUSTOMER_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.IntegerType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("_ingested_at", T.TimestampType()),
        T.StructField("spend", T.DoubleType()),
        T.StructField("visits", T.IntegerType()),
        T.StructField("tier", T.StringType()),
    ]
)
RISK_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.IntegerType()),
        T.StructField("scored_at", T.TimestampType()),
        T.StructField("_ingested_at", T.TimestampType()),
        T.StructField("risk", T.DoubleType()),
    ]
)
STORE_SCHEMA = T.StructType(
    [
        T.StructField("store_id", T.StringType()),
        T.StructField("region", T.StringType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("_ingested_at", T.TimestampType()),
        T.StructField("footfall", T.LongType()),
        T.StructField("open", T.BooleanType()),
    ]
)


def to_spark(spark: SparkSession, frame: pd.DataFrame, schema: T.StructType) -> DataFrame:
    """A Spark frame with an explicit schema (pandas string columns passed as objects)."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return spark.createDataFrame(frame, schema)


# -- the reference ----------------------------------------------------------------------------


@dataclass
class RefSource:
    """A source for both implementations: pandas rows plus how to join them."""

    group: str
    rows: pd.DataFrame
    schema: T.StructType
    keys: tuple[str, ...]
    ts: str
    features: tuple[str, ...]
    output_names: Mapping[str, str] = field(default_factory=dict)
    ttl: timedelta | None = None

    def to_spark(self, spark: SparkSession) -> PitSource:
        return PitSource(
            group=self.group,
            df=to_spark(spark, self.rows, self.schema),
            entity_keys=self.keys,
            timestamp_key=self.ts,
            features=self.features,
            output_names=dict(self.output_names),
            ttl=self.ttl,
        )


def reference(
    entity: pd.DataFrame, sources: Sequence[RefSource], timestamp_column: str, fill: str
) -> pd.DataFrame:
    """The expected result, with pandas `merge_asof` (backward, exact matches allowed)."""
    out = entity.copy()
    position = pd.Series(np.arange(len(out)), index=out.index)
    out["_pos"] = position
    for src in sources:
        keys = list(src.keys)
        events = src.rows.dropna(subset=[*keys, src.ts])
        # merge_asof takes the last of equal `on` values, so order ties by ingestion time.
        events = events.sort_values([src.ts, "_ingested_at"], kind="mergesort")
        left = out.dropna(subset=[*keys, timestamp_column])[["_pos", timestamp_column, *keys]]
        left = left.assign(_t=pd.to_datetime(left[timestamp_column])).sort_values(
            "_t", kind="mergesort"
        )
        left = _plain_keys(left, keys)
        for feature in src.features:
            right = events if fill == "none" else events.dropna(subset=[feature])
            right = right[[*keys, src.ts, feature]].rename(columns={src.ts: "_ev", feature: "_v"})
            merged = pd.merge_asof(
                left,
                _plain_keys(right, keys),
                left_on="_t",
                right_on="_ev",
                by=keys,
                direction="backward",
                allow_exact_matches=True,
            )
            values = merged["_v"].astype(object)
            if src.ttl is not None:
                values[(merged["_t"] - merged["_ev"]) > src.ttl] = None
            by_position = pd.Series(values.to_numpy(), index=merged["_pos"].to_numpy())
            name = src.output_names.get(feature, feature)
            out[name] = out["_pos"].map(by_position)
    return out.drop(columns=["_pos"])


def _plain_keys(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Key columns without nulls as plain numpy types (merge_asof's `by` needs equal dtypes)."""
    frame = frame.copy()
    for key in keys:
        if pd.api.types.is_integer_dtype(frame[key]):
            frame[key] = frame[key].astype("int64")
        else:
            frame[key] = frame[key].astype(object)
    return frame


def canonical(frame: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Object columns with None for every kind of null, rows in a stable order."""
    frame = frame.sort_values(list(order), kind="mergesort").reset_index(drop=True)
    result = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column].astype(object)
        result[column] = values.where(frame[column].notna(), None)
    return result


def assert_same(actual: DataFrame, expected: pd.DataFrame, order: Sequence[str]) -> None:
    got = actual.toPandas()
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(
        canonical(got, order), canonical(expected, order), check_dtype=False
    )


# -- random data ------------------------------------------------------------------------------


def _hours(rng: np.random.Generator, size: int, low: int, high: int) -> pd.Series:
    return pd.Series(BASE + pd.to_timedelta(rng.integers(low, high, size), unit="h"))


def _with_nulls(rng: np.random.Generator, values: pd.Series, rate: float) -> pd.Series:
    values = values.astype(object)
    values[rng.random(len(values)) < rate] = None
    return values


def make_case(n: int, seed: int) -> tuple[pd.DataFrame, list[RefSource]]:
    """Entity rows and three groups (two keyed by customer, one by (store, region))."""
    rng = np.random.default_rng(seed)
    n_customers = max(3, n // 4)
    n_stores = max(2, n // 25)
    span = max(48, n // 5)  # hours; small enough for many exact time ties

    # Entity rows: some customers never seen in the feature rows, some rows before any event,
    # null keys and null times, duplicated rows, a label.
    entity = pd.DataFrame(
        {
            "row_id": np.arange(n, dtype="int64"),
            "customer_id": pd.array(rng.integers(0, int(n_customers * 1.2), n), dtype="Int64"),
            "store_id": [f"s{i}" for i in rng.integers(0, n_stores + 1, n)],
            "region": rng.choice(["eu", "us"], n).astype(object),
            "ts": _hours(rng, n, -12, span + 12),
            "label": rng.integers(0, 2, n).astype(float),
        }
    )
    entity.loc[rng.random(n) < 0.05, "customer_id"] = pd.NA
    entity.loc[rng.random(n) < 0.05, "region"] = None
    entity.loc[rng.random(n) < 0.05, "ts"] = pd.NaT
    duplicates = entity.sample(n=max(2, n // 20), random_state=seed)
    entity = pd.concat([entity, duplicates], ignore_index=True)

    def ingested(size: int) -> pd.Series:
        # Distinct per row (the store guarantees that), in an order unrelated to event time.
        return pd.Series(BASE + pd.to_timedelta(rng.permutation(size), unit="s"))

    m = 3 * n
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(rng.integers(0, n_customers, m), dtype="Int32"),
            "event_ts": _hours(rng, m, 0, span),
            "_ingested_at": ingested(m),
            "spend": _with_nulls(rng, pd.Series(rng.integers(0, 1000, m) / 4.0), 0.25),
            "visits": _with_nulls(rng, pd.Series(rng.integers(0, 50, m)), 0.2).astype("Int32"),
            "tier": _with_nulls(rng, pd.Series(rng.choice(["gold", "silver", "bronze"], m)), 0.2),
        }
    )
    customers.loc[rng.random(m) < 0.02, "customer_id"] = pd.NA
    customers.loc[rng.random(m) < 0.02, "event_ts"] = pd.NaT

    r = n
    risk = pd.DataFrame(
        {
            "customer_id": pd.array(rng.integers(0, n_customers, r), dtype="Int32"),
            "scored_at": _hours(rng, r, 0, span),
            "_ingested_at": ingested(r),
            "risk": _with_nulls(rng, pd.Series(rng.integers(0, 100, r) / 100.0), 0.3),
        }
    )

    s = 2 * n
    stores = pd.DataFrame(
        {
            "store_id": [f"s{i}" for i in rng.integers(0, n_stores, s)],
            "region": rng.choice(["eu", "us"], s).astype(object),
            "event_ts": _hours(rng, s, 0, span),
            "_ingested_at": ingested(s),
            "footfall": _with_nulls(rng, pd.Series(rng.integers(0, 10**6, s)), 0.3).astype("Int64"),
            "open": _with_nulls(rng, pd.Series(rng.random(s) < 0.5), 0.2),
        }
    )
    stores.loc[rng.random(s) < 0.02, "region"] = None

    sources = [
        RefSource(
            "customer",
            customers,
            CUSTOMER_SCHEMA,
            ("customer_id",),
            "event_ts",
            ("spend", "visits", "tier"),
            {"spend": "customer__spend"},
        ),
        RefSource(
            "store",
            stores,
            STORE_SCHEMA,
            ("store_id", "region"),
            "event_ts",
            ("footfall", "open"),
            ttl=timedelta(hours=24),
        ),
        RefSource(
            "risk", risk, RISK_SCHEMA, ("customer_id",), "scored_at", ("risk",), ttl=10 * HOUR
        ),
    ]
    return entity, sources


@pytest.mark.parametrize("n", [50, 500, 3000])
@pytest.mark.parametrize("fill", ["none", "last_non_null"])
def test_matches_merge_asof_reference(spark: SparkSession, n: int, fill: str) -> None:
    entity, sources = make_case(n, seed=n)
    entity_df = to_spark(spark, entity, ENTITY_SCHEMA)
    result = point_in_time_join(
        entity_df,
        [s.to_spark(spark) for s in sources],
        "ts",
        fill=fill,  # type: ignore[arg-type]
    )
    expected = reference(entity, sources, "ts", fill)
    assert_same(result, expected, ["row_id"])


def test_feature_types_and_column_order(spark: SparkSession) -> None:
    entity, sources = make_case(50, seed=1)
    result = point_in_time_join(
        to_spark(spark, entity, ENTITY_SCHEMA), [s.to_spark(spark) for s in sources], "ts"
    )
    types = {f.name: f.dataType for f in result.schema.fields}
    assert result.columns == [
        *ENTITY_SCHEMA.fieldNames(),
        "customer__spend",
        "visits",
        "tier",
        "footfall",
        "open",
        "risk",
    ]
    assert types["customer__spend"] == T.DoubleType()
    assert types["visits"] == T.IntegerType()
    assert types["tier"] == T.StringType()
    assert types["footfall"] == T.LongType()
    assert types["open"] == T.BooleanType()
    for entity_field in ENTITY_SCHEMA.fields:
        assert types[entity_field.name] == entity_field.dataType


def test_one_shuffle_per_key_set(spark: SparkSession) -> None:
    entity, sources = make_case(50, seed=2)
    result = point_in_time_join(
        to_spark(spark, entity, ENTITY_SCHEMA),
        [s.to_spark(spark) for s in sources],
        "ts",
        fill="last_non_null",
    )
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result.explain()
    plan = buffer.getvalue()
    # Two key sets (customer_id; store_id+region) -> two exchanges, whatever the source count.
    assert plan.count("Exchange hashpartitioning") == 2
    assert "SortMergeJoin" not in plan
    assert "BroadcastHashJoin" not in plan


# -- hand-checked semantics ---------------------------------------------------------------------


def _entity(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    schema = "row_id long, customer_id long, ts timestamp, label double"
    return spark.createDataFrame(rows, schema)


def _events(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    schema = "customer_id long, event_ts timestamp, _ingested_at timestamp, a int, b string"
    return spark.createDataFrame(rows, schema)


def _by_row(df: DataFrame, *columns: str) -> dict[int, tuple[Any, ...]]:
    return {r["row_id"]: tuple(r[c] for c in columns) for r in df.collect()}


def test_hand_checked_semantics(spark: SparkSession) -> None:
    t = BASE
    events = _events(
        spark,
        [
            (1, t, t + 10 * HOUR, 1, "one"),
            (1, t + 2 * HOUR, t + 5 * HOUR, 2, "two-late"),  # same event time, ingested later:
            (1, t + 2 * HOUR, t + 4 * HOUR, 3, "two-early"),  # the later ingestion wins
            (1, t + 4 * HOUR, t + 6 * HOUR, None, None),  # latest event has nulls
            (2, t + 1 * HOUR, t + 1 * HOUR, 20, "x"),
            (None, t, t, 99, "null key"),  # ignored
            (2, None, t, 98, "null time"),  # ignored
        ],
    )
    entity = _entity(
        spark,
        [
            (0, 1, t - HOUR, 1.0),  # before any event
            (1, 1, t, 0.0),  # exactly at an event: included
            (2, 1, t + 2 * HOUR, 1.0),  # tie on event time
            (3, 1, t + 5 * HOUR, 0.0),  # latest event has null features
            (4, 3, t + 5 * HOUR, 1.0),  # key absent from the features
            (5, None, t + 5 * HOUR, 0.0),  # null key
            (6, 2, None, 1.0),  # null time
            (7, 2, t + 3 * HOUR, 1.0),  # exactly at the ttl boundary (2h): kept
            (8, 2, t + 3 * HOUR + timedelta(microseconds=1), 0.0),  # just past the ttl
            (7, 2, t + 3 * HOUR, 1.0),  # duplicate row stays
        ],
    )
    source = PitSource("g", events, ("customer_id",), "event_ts", ("a", "b"), {}, ttl=None)
    # The same rows with ttls: three sources with one key set, joined in one pass.
    ttl2 = PitSource("g2", events, ("customer_id",), "event_ts", ("a",), {"a": "a2"}, 2 * HOUR)
    ttl3 = PitSource("g3", events, ("customer_id",), "event_ts", ("a",), {"a": "a3"}, 3 * HOUR)
    rows = point_in_time_join(entity, [source, ttl2, ttl3], "ts").collect()
    assert len(rows) == 10
    assert sorted(r["row_id"] for r in rows) == [0, 1, 2, 3, 4, 5, 6, 7, 7, 8]
    got = {r["row_id"]: (r["a"], r["b"], r["label"]) for r in rows}
    assert got[0] == (None, None, 1.0)
    assert got[1] == (1, "one", 0.0)
    assert got[2] == (2, "two-late", 1.0)
    assert got[3] == (None, None, 0.0)
    assert got[4] == (None, None, 1.0)
    assert got[5] == (None, None, 0.0)
    assert got[6] == (None, None, 1.0)
    assert got[7] == (20, "x", 1.0)
    assert got[8] == (20, "x", 0.0)
    with_ttl = {r["row_id"]: (r["a2"], r["a3"]) for r in rows}
    assert with_ttl[1] == (1, 1)  # an event exactly at t is 0 old
    assert with_ttl[7] == (20, 20)  # exactly 2h old: inside a 2h ttl
    assert with_ttl[8] == (None, 20)  # 2h and 1us old: outside it

    filled = point_in_time_join(entity, [source, ttl2, ttl3], "ts", fill="last_non_null")
    got = {r["row_id"]: (r["a"], r["b"], r["a2"], r["a3"]) for r in filled.collect()}
    # At t+5h the latest event (t+4h) has nulls; the latest non-null values are from t+2h,
    # and the ttl is measured on that value's own event: 3h old, outside 2h, inside 3h.
    assert got[3] == (2, "two-late", None, 2)
    assert got[0] == (None, None, None, None)
    assert got[8] == (20, "x", None, 20)


def test_exact_ties_resolve_by_value_whatever_the_plan(spark: SparkSession) -> None:
    t = BASE
    rows = [
        (1, t, t, 5, "x"),
        (1, t, t, 7, None),
        (1, t, t, 6, "y"),
    ]
    entity = _entity(spark, [(0, 1, t, 1.0)])
    results = set()
    for ordering in (rows, rows[::-1]):
        events = _events(spark, ordering).repartition(3)
        source = PitSource("g", events, ("customer_id",), "event_ts", ("a", "b"), {})
        results.add(
            (
                _by_row(point_in_time_join(entity, [source], "ts"), "a", "b")[0],
                _by_row(point_in_time_join(entity, [source], "ts", fill="last_non_null"), "b")[0],
            )
        )
    # The greatest feature tuple wins: (7, None); with last_non_null, b's greatest non-null.
    assert results == {((7, None), ("y",))}


def test_entity_time_as_string_or_date_is_returned_unchanged(spark: SparkSession) -> None:
    t = BASE
    events = _events(
        spark, [(1, t, t, 1, "a"), (1, t + 30 * HOUR, t, 2, "b"), (1, t + 48 * HOUR, t, 3, "c")]
    )
    source = PitSource("g", events, ("customer_id",), "event_ts", ("a",), {})
    as_text = spark.createDataFrame(
        [(0, 1, "2024-01-02 07:00:00"), (1, 1, "2024-01-01"), (2, 1, None)],
        "row_id long, customer_id long, ts string",
    )
    result = point_in_time_join(as_text, [source], "ts")
    assert result.schema["ts"].dataType == T.StringType()
    assert _by_row(result, "ts", "a") == {
        0: ("2024-01-02 07:00:00", 2),
        1: ("2024-01-01", 1),
        2: (None, None),
    }
    as_date = spark.createDataFrame(
        [(0, 1, date(2024, 1, 2)), (1, 1, date(2024, 1, 3))],
        "row_id long, customer_id long, d date",
    )
    result = point_in_time_join(as_date, [source], "d")
    assert result.schema["d"].dataType == T.DateType()
    assert _by_row(result, "d", "a") == {0: (date(2024, 1, 2), 1), 1: (date(2024, 1, 3), 3)}


def test_unreadable_entity_time_string_raises(spark: SparkSession) -> None:
    events = _events(spark, [(1, BASE, BASE, 1, "a")])
    source = PitSource("g", events, ("customer_id",), "event_ts", ("a",), {})
    bad = spark.createDataFrame([(1, "not a time")], "customer_id long, ts string")
    if spark.conf.get("spark.sql.ansi.enabled") != "true":
        pytest.skip("without ANSI mode, unreadable strings are nulls")
    with pytest.raises(PointInTimeError, match="cannot be read as timestamps") as info:
        point_in_time_join(bad, [source], "ts")
    assert info.value.fix


def test_empty_entities_and_no_sources(spark: SparkSession) -> None:
    events = _events(spark, [(1, BASE, BASE, 1, "a")])
    source = PitSource("g", events, ("customer_id",), "event_ts", ("a",), {"a": "g_a"})
    empty = _entity(spark, [])
    result = point_in_time_join(empty, [source], "ts")
    assert result.columns == [*empty.columns, "g_a"]
    assert result.count() == 0
    no_times = _entity(spark, [(0, 1, None, 1.0)])
    assert _by_row(point_in_time_join(no_times, [source], "ts"), "g_a") == {0: (None,)}
    assert point_in_time_join(no_times, [], "ts").collect() == no_times.collect()


# -- validation: errors before any Spark job ----------------------------------------------------


def _cases(spark: SparkSession) -> dict[str, tuple[DataFrame, list[PitSource], str, str, str]]:
    entity = _entity(spark, [(0, 1, BASE, 1.0)])
    events = _events(spark, [(1, BASE, BASE, 1, "a")])

    def source(**changes: Any) -> PitSource:
        values: dict[str, Any] = {
            "group": "g",
            "df": events,
            "entity_keys": ("customer_id",),
            "timestamp_key": "event_ts",
            "features": ("a",),
            "output_names": {},
        }
        values.update(changes)
        return PitSource(**values)

    text_keys = spark.createDataFrame(
        [("1", BASE, BASE, 1)],
        "customer_id string, event_ts timestamp, _ingested_at timestamp, a int",
    )
    return {
        "missing time column": (entity, [source()], "when", "none", "'when'"),
        "time column not a time": (entity, [source()], "label", "none", "not a time"),
        "key missing in entity": (
            entity.drop("customer_id"),
            [source()],
            "ts",
            "none",
            "entity key",
        ),
        "key missing in features": (
            entity,
            [source(df=events.withColumnRenamed("customer_id", "cid"))],
            "ts",
            "none",
            "'customer_id'",
        ),
        "feature missing": (entity, [source(features=("a", "zzz"))], "ts", "none", "'zzz'"),
        "ingested_at missing": (
            entity,
            [source(df=events.drop("_ingested_at"))],
            "ts",
            "none",
            "_ingested_at",
        ),
        "event time not a time": (
            entity,
            [source(df=events.withColumn("event_ts", F.lit(1)))],
            "ts",
            "none",
            "event time",
        ),
        "output clashes with entity column": (
            entity,
            [source(output_names={"a": "label"})],
            "ts",
            "none",
            "'label'",
        ),
        "output clashes case-insensitively": (
            entity,
            [source(output_names={"a": "LABEL"})],
            "ts",
            "none",
            "'LABEL'",
        ),
        "outputs clash with each other": (
            entity,
            [source(), source(group="h", features=("b",), output_names={"b": "a"})],
            "ts",
            "none",
            "group 'g'",
        ),
        "key types differ": (entity, [source(df=text_keys)], "ts", "none", "different types"),
        "negative ttl": (entity, [source(ttl=-HOUR)], "ts", "none", "negative"),
        "no features": (entity, [source(features=())], "ts", "none", "No features"),
        "unknown fill": (entity, [source()], "ts", "forward", "fill"),
        "duplicate entity columns": (
            entity.select("row_id", "customer_id", "ts", F.col("label").alias("row_id")),
            [source()],
            "ts",
            "none",
            "duplicate",
        ),
    }


CASE_NAMES = [
    "missing time column",
    "time column not a time",
    "key missing in entity",
    "key missing in features",
    "feature missing",
    "ingested_at missing",
    "event time not a time",
    "output clashes with entity column",
    "output clashes case-insensitively",
    "outputs clash with each other",
    "key types differ",
    "negative ttl",
    "no features",
    "unknown fill",
    "duplicate entity columns",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_invalid_requests_raise_before_any_job(
    spark: SparkSession, spark_jobs: Any, case: str
) -> None:
    entity, sources, timestamp_column, fill, message = _cases(spark)[case]
    with spark_jobs.started() as jobs, pytest.raises(PointInTimeError) as info:
        point_in_time_join(entity, sources, timestamp_column, fill=fill)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert info.value.fix
    assert jobs == []


def test_job_detector_sees_the_range_job(spark: SparkSession, spark_jobs: Any) -> None:
    entity, sources, _, _, _ = _cases(spark)["missing time column"]
    with spark_jobs.started() as jobs:
        point_in_time_join(entity, sources, "ts")
    assert len(jobs) >= 1


def test_integer_keys_of_different_widths_join(spark: SparkSession) -> None:
    entity = spark.createDataFrame([(0, 1, BASE)], "row_id long, customer_id int, ts timestamp")
    events = _events(spark, [(1, BASE, BASE, 4, "a")])
    source = PitSource("g", events, ("customer_id",), "event_ts", ("a",), {})
    result = point_in_time_join(entity, [source], "ts")
    assert result.schema["customer_id"].dataType == T.IntegerType()
    assert _by_row(result, "customer_id", "a") == {0: (1, 4)}
