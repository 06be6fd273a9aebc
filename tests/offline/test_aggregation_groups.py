"""Aggregation groups end to end: training sets, materialization, online equals offline."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.engines.spark import aggregations, tiles
from featurelake.errors import MaterializationError, PointInTimeError
from featurelake.schema import FeatureGroupSchema
from featurelake.serving import FeatureStore

pytestmark = [pytest.mark.spark]

T0 = datetime(2024, 5, 1)
PURCHASES = FeatureGroupSchema(
    "purchases",
    ["order_id"],
    [
        {"name": "customer_id", "type": "bigint"},
        {"name": "amount", "type": "double"},
        {"name": "channel", "type": "string"},
    ],
)
FUNCTIONS = ["count", "sum", "avg", "min", "max", "stddev", "last", "approx_count_distinct"]
SPEND = FeatureGroupSchema.from_dict(
    {
        "name": "customer_spend",
        "entity_keys": ["customer_id"],
        "event_source": "purchases",
        "aggregations": [
            {"column": "amount", "function": f, "windows": ["1d", "7d"]}
            for f in FUNCTIONS
            if f != "approx_count_distinct"
        ]
        + [
            {"column": "channel", "function": "approx_count_distinct", "windows": ["7d"]},
            {"column": "*", "function": "count", "windows": ["7d"], "filter": "channel = 'web'"},
        ],
        "composites": [{"name": "web_share_7d", "expression": "events_count_7d / amount_count_7d"}],
    }
)
AS_OF = T0 + timedelta(days=9, hours=5)


def purchase_rows() -> pd.DataFrame:
    rng = random.Random(3)
    rows = []
    for order in range(400):
        customer = 1 if order % 3 == 0 else rng.randint(2, 9)  # customer 1: a burst
        ts = T0 + timedelta(minutes=rng.randrange(0, 10 * 1440))
        amount = None if rng.random() < 0.1 else round(rng.uniform(1, 300), 2)
        rows.append((order, ts, customer, amount, rng.choice(["web", "app", "store"])))
    rows.append((900, AS_OF - timedelta(days=7), 2, 50.0, "web"))  # exactly on the 7d edge
    rows.append((901, AS_OF, 2, 25.0, "app"))  # exactly at the request time
    return pd.DataFrame(rows, columns=["order_id", "ts", "customer_id", "amount", "channel"])


@pytest.fixture(scope="module")
def store(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    config = FeatureStoreConfig(
        storage_path=str(tmp_path_factory.mktemp("aggregations") / "store"),
        enable_online_store=True,
        online_backend=OnlineBackend.MEMORY,
    )
    store = FeatureStore(config, spark)
    store.register_features(PURCHASES)
    store.register_features(SPEND)
    frame = purchase_rows().rename(columns={"ts": "event_timestamp"})
    store.write_features("purchases", frame)
    return store


def expected_value(
    reference: Any, frame: pd.DataFrame, entities: pd.DataFrame, feature: str
) -> list[Any]:
    for aggregation in SPEND.aggregations:
        for name, window in aggregation.outputs():
            if name == feature:
                keep = None
                if aggregation.filter:
                    keep = lambda f: f["channel"] == "web"  # noqa: E731
                return reference(
                    entities,
                    frame,
                    "customer_id",
                    aggregation.column,
                    aggregation.function,
                    window,
                    keep,
                )
    raise KeyError(feature)


def matches(got: Any, want: Any, feature: str) -> bool:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None or (isinstance(got, float) and math.isnan(got))
    if "approx_count_distinct" in feature:
        return abs(got - want) <= max(1, 0.05 * want)
    if isinstance(want, float):
        return abs(got - want) <= 1e-9 * max(1.0, abs(want))
    return bool(got == want)


def test_training_sets_take_window_values_as_of_each_row(
    store: FeatureStore, window_reference: Any
) -> None:
    assert_training_set_matches(store, window_reference, purchase_rows())


def assert_training_set_matches(
    store: FeatureStore, window_reference: Any, frame: pd.DataFrame
) -> None:
    rng = random.Random(5)
    entities = pd.DataFrame(
        {
            "customer_id": [rng.randint(1, 10) for _ in range(40)] + [2, 2],
            "t": [T0 + timedelta(minutes=rng.randrange(0, 11 * 1440)) for _ in range(40)]
            + [AS_OF, AS_OF - timedelta(seconds=1)],
        }
    )
    entities["label"] = range(len(entities))
    training = store.offline.get_training_set(entities, ["customer_spend.*"], timestamp_column="t")
    result = training.df.orderBy("label").toPandas().astype(object)
    result = result.where(result.notna(), None)
    assert list(result.columns) == [
        "customer_id",
        "t",
        "label",
        *SPEND.feature_names,
        "web_share_7d",
    ]
    for feature in SPEND.feature_names:
        want = expected_value(window_reference, frame, entities, feature)
        for i, (got, expected) in enumerate(zip(result[feature], want, strict=True)):
            assert matches(got, expected, feature), (
                feature,
                entities.iloc[i].to_dict(),
                got,
                expected,
            )
    share = [
        None if not n else web / n
        for web, n in zip(result["events_count_7d"], result["amount_count_7d"], strict=True)
    ]
    assert [None if v is None else float(v) for v in result["web_share_7d"]] == share
    assert training.manifest.tables[0].group == "purchases"
    assert "customer_spend@1" in training.manifest.virtual_groups


def test_online_values_equal_training_set_values(store: FeatureStore, spark: SparkSession) -> None:
    written = store.materialize_aggregations("customer_spend", as_of=AS_OF)
    assert written.rows_written == 9  # every customer of the source (10 has no purchases)
    store.sync_to_online("customer_spend")
    customers = list(range(1, 11))
    refs = [f"customer_spend.{f}" for f in SPEND.feature_names] + ["customer_spend.web_share_7d"]
    vectors = store.get_online_features(refs, customers)
    entities = pd.DataFrame({"customer_id": customers, "event_timestamp": [AS_OF] * len(customers)})
    offline = store.get_historical_features(entities, refs).orderBy("customer_id").toPandas()
    offline = offline.astype(object).where(offline.notna(), None)
    for vector, (_, row) in zip(vectors, offline.iterrows(), strict=True):
        for name in [*SPEND.feature_names, "web_share_7d"]:
            online_value = vector.get(name)
            if isinstance(online_value, float) and math.isnan(online_value):
                online_value = None
            assert online_value == row[name], (name, vector.entity, online_value, row[name])
        if vector.entity["customer_id"] != 10:
            assert vector.event_time("amount_sum_7d") == AS_OF  # the age is measured from here
    assert vectors[9].get("amount_count_7d") == 0 and not vectors[9].found("amount_count_7d")
    pandas_read = store.get_historical_features_pandas(entities, refs)  # Spark: windows, composite
    pandas_read = pandas_read.sort_values("customer_id").reset_index(drop=True)
    assert pandas_read.astype(object).where(pandas_read.notna(), None).equals(offline)
    assert vectors[1].get("amount_last_1d") == 25.0  # the purchase exactly at AS_OF counts


def tile_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The pandas reference of the daily tiles: (customer, tile end, amounts, their sum)."""
    ends = frame["ts"].dt.ceil("1D")
    grouped = frame.assign(end=ends).groupby(["customer_id", "end"])["amount"]
    return sorted(
        (int(k), e.to_pydatetime(), int(n), round(float(s), 6))
        for (k, e), n, s in zip(grouped.count().index, grouped.count(), grouped.sum(), strict=True)
    )


def stored_tiles(store: FeatureStore, spark: SparkSession) -> list[tuple[Any, ...]]:
    schema = store.offline.resolve_group("customer_spend")
    events = aggregations.source_events(store.offline, schema)
    spec = aggregations.tile_spec(store.offline, schema, events)
    assert spec.size == timedelta(days=1)  # the gcd of the 1d and 7d windows
    current = tiles.current_tiles(spark, spec, events.version, events.location)
    assert current is not None, "the tiles cover the current version and are read"
    columns = [c for c in current.frame.columns if c.endswith(("_n", "_s"))]
    count = next(c for c in columns if c.endswith("_n") and c[:-2] + "_s" in columns)
    total = count[:-2] + "_s"
    rows = current.frame.select("customer_id", "tile_end", count, total).collect()
    return sorted((int(r[0]), r[1], int(r[2]), round(float(r[3] or 0.0), 6)) for r in rows if r[2])


def test_materialization_writes_tiles_refreshed_on_appends(
    store: FeatureStore, spark: SparkSession, window_reference: Any
) -> None:
    """The tiles hold each customer's daily partials, training sets read them, and appended
    events (one late, in an old tile) refresh them from the earliest tile they touch."""
    store.materialize_aggregations("customer_spend", as_of=AS_OF)
    frame = purchase_rows()
    stored = stored_tiles(store, spark)
    with_amounts = frame[frame["amount"].notna()]
    assert stored == tile_rows(with_amounts)
    assert_training_set_matches(store, window_reference, frame)  # read from the tiles

    late = pd.DataFrame(
        [
            (1000, T0 + timedelta(days=3, hours=2), 1, 40.0, "web"),  # a late event, old tile
            (1001, T0 + timedelta(days=9, hours=1), 3, 12.5, "app"),
        ],
        columns=["order_id", "ts", "customer_id", "amount", "channel"],
    )
    store.write_features("purchases", late.rename(columns={"ts": "event_timestamp"}))
    schema = store.offline.resolve_group("customer_spend")
    refresh = aggregations.refresh_tiles(store.offline, schema)
    assert refresh is not None and refresh.mode == "incremental"
    assert refresh.since == T0 + timedelta(days=3)  # the start of the late event's tile
    assert aggregations.refresh_tiles(store.offline, schema).mode == "current"  # type: ignore[union-attr]
    both = pd.concat([frame, late], ignore_index=True)
    stored = stored_tiles(store, spark)
    assert stored == tile_rows(both[both["amount"].notna()])
    assert_training_set_matches(store, window_reference, both)


def test_backfill_replaces_a_range_of_snapshots(store: FeatureStore) -> None:
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=5)
    result = store.offline.backfill_aggregations("customer_spend", start, end, every="1d")
    table = store.offline.read_table("customer_spend").toPandas()
    in_range = table[(table["event_timestamp"] >= start) & (table["event_timestamp"] < end)]
    assert sorted(in_range["event_timestamp"].unique()) == [
        pd.Timestamp(start + timedelta(days=i)) for i in range(3)
    ]
    assert result.rows_written == len(in_range) == 3 * in_range["customer_id"].nunique()
    entities = in_range[["customer_id", "event_timestamp"]].reset_index(drop=True)
    offline = store.get_historical_features(entities, "customer_spend.amount_sum_7d").toPandas()
    merged = in_range.merge(offline, on=["customer_id", "event_timestamp"], suffixes=("", "_ts"))
    assert len(merged) == len(in_range)
    assert (
        merged["amount_sum_7d"].fillna(-1).tolist()
        == merged["amount_sum_7d_ts"].fillna(-1).tolist()
    )


def test_errors_name_the_problem(store: FeatureStore, spark: SparkSession) -> None:
    with pytest.raises(MaterializationError, match="has no aggregations"):
        store.materialize_aggregations("purchases")
    bad_filter = SPEND.with_changes(
        name="bad_filter",
        composites=[],
        aggregations=[
            {"column": "amount", "function": "sum", "windows": ["1d"], "filter": "nope > 1"}
        ],
    )
    store.register_features(bad_filter)
    entities = pd.DataFrame({"customer_id": [1], "event_timestamp": [AS_OF]})
    with pytest.raises(PointInTimeError, match="nope > 1"):
        store.get_historical_features(entities, "bad_filter.*")
    bad_column = SPEND.with_changes(
        name="bad_column",
        composites=[],
        aggregations=[{"column": "channel", "function": "sum", "windows": ["1d"]}],
    )
    store.register_features(bad_column)
    with pytest.raises(PointInTimeError, match="sum of 'channel'"):
        store.get_historical_features(entities, "bad_column.*")
