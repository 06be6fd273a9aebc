"""One rule for time zones: naive times (pandas, Python, Spark TIMESTAMP_NTZ, pandas-written
parquet) mean UTC, aware ones are converted; every path gives the same rows for each form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.engines.duckdb.reader import DuckDBFeatureReader
from featurelake.errors import SchemaValidationError
from featurelake.online.memory import InMemoryOnlineStore
from featurelake.online.sync import sync_to_online
from featurelake.plan.read_plan import ReadRequest
from featurelake.quality import attach_configured_quality, evaluate_checks
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.schema.model import QualityRule
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore
from featurelake.times import sql_time_literal, utc_now

pytestmark = pytest.mark.spark

# Recent events, so the group's freshness rule (checked on every write) passes.
T0 = (utc_now() - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
FORMS = ("pandas", "parquet", "ntz", "aware")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def group(name: str) -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        timestamp_key="event_timestamp",
        ttl="1d",
        freshness="3d",
        features=[FeatureSchema("spend", "double", min_value=0), FeatureSchema("tier", "string")],
    )


def events() -> pd.DataFrame:
    """Naive times (UTC by the rule), a few events per customer, microseconds included."""
    rows = []
    for customer in range(1, 5):
        for hour in range(0, 30, 7):
            stamp = T0 + timedelta(hours=hour + customer, microseconds=customer * 1001)
            rows.append((customer, stamp, float(customer * 100 + hour), f"t{hour % 3}"))
    return pd.DataFrame(rows, columns=["customer_id", "event_timestamp", "spend", "tier"])


def as_form(spark: SparkSession, frame: pd.DataFrame, form: str, folder: Path) -> object:
    """The same rows as a user may hold them."""
    if form == "pandas":
        return frame
    if form == "parquet":  # pandas writes naive times; Spark reads them as TIMESTAMP_NTZ
        path = folder / f"rows-{len(list(folder.iterdir()))}.parquet"
        frame.to_parquet(path)
        read = spark.read.parquet(str(path))
        assert read.schema[frame.columns[1]].dataType.simpleString() == "timestamp_ntz"
        return read
    if form == "ntz":
        converted = spark.createDataFrame(frame)
        return converted.withColumn(frame.columns[1], F.col(frame.columns[1]).cast("timestamp_ntz"))
    aware = frame.copy()
    aware[frame.columns[1]] = aware[frame.columns[1]].dt.tz_localize("UTC").dt.tz_convert(NEW_YORK)
    return aware


def rows(frame: DataFrame | pd.DataFrame, order: list[str]) -> list[tuple[object, ...]]:
    pandas = frame.toPandas() if isinstance(frame, DataFrame) else frame
    pandas = pandas.drop(columns=[c for c in pandas.columns if c.startswith("_")])
    ordered = pandas.sort_values(order).astype(object)
    return [tuple(r) for r in ordered.where(ordered.notna(), None).itertuples(index=False)]


@pytest.fixture(scope="module")
def zoned(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One group per input form, each written from the same rows in that form."""
    folder = tmp_path_factory.mktemp("zones")
    config = FeatureStoreConfig(storage_path=str(folder / "store"), spark_shuffle_partitions=2)
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    attach_configured_quality(store)  # the on-write checks (freshness included) run
    data = events()
    for form in FORMS:
        store.register_features(group(f"g_{form}"))
        store.write_features(f"g_{form}", as_form(spark, data, form, folder))
    return {"store": store, "config": config, "folder": folder, "events": data}


def test_every_form_writes_the_same_gold_rows(zoned: dict[str, object]) -> None:
    store = zoned["store"]
    assert isinstance(store, MaterializedFeatureStore)
    gold = {f: rows(store.read_table(f"g_{f}"), ["customer_id", "event_timestamp"]) for f in FORMS}
    for form in FORMS:
        assert gold[form] == gold["pandas"], form
        column = store.read_table(f"g_{form}").schema["event_timestamp"].dataType
        assert column.simpleString() == "timestamp", form
    data = zoned["events"]
    assert isinstance(data, pd.DataFrame)
    assert gold["pandas"] == rows(data, ["customer_id", "event_timestamp"])  # naive = UTC


def test_training_sets_agree_for_any_mix_of_entity_and_feature_times(
    spark: SparkSession, zoned: dict[str, object]
) -> None:
    store, folder = zoned["store"], zoned["folder"]
    assert isinstance(store, MaterializedFeatureStore) and isinstance(folder, Path)
    labels = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 3, 4, 4],
            "label_time": [T0 + timedelta(hours=h) for h in (0, 9, 10, 25, 5, 40)],
            "label": [0, 1, 0, 1, 1, 0],
        }
    )
    expected = None
    # every feature form with naive entity times, every entity form against parquet features
    pairs = [(form, "pandas") for form in FORMS] + [("parquet", form) for form in FORMS[1:]]
    for feature_form, entity_form in pairs:
        entities = as_form(
            spark, labels[["customer_id", "label_time", "label"]], entity_form, folder
        )
        if entity_form == "aware":  # a second zone: Tokyo labels against New York events
            assert isinstance(entities, pd.DataFrame)
            entities["label_time"] = entities["label_time"].dt.tz_convert(TOKYO)
        got = rows(
            store.get_training_set(entities, f"g_{feature_form}.*").df,
            ["customer_id", "label_time"],
        )
        expected = expected or got
        assert got == expected, (feature_form, entity_form)
    assert expected is not None
    by_time = {(r[0], pd.Timestamp(r[1]).to_pydatetime()): r for r in expected}
    # customer 1 at T0+9h: its events are at T0+1h and T0+8h (+1001 us): the later one counts
    assert by_time[(1, T0 + timedelta(hours=9))][3] == 107.0
    assert by_time[(1, T0)][3] is None


def test_point_in_time_and_backfill_take_naive_as_utc_and_convert_aware(
    spark: SparkSession, zoned: dict[str, object]
) -> None:
    store = zoned["store"]
    assert isinstance(store, MaterializedFeatureStore)
    moment = T0 + timedelta(hours=2, minutes=30)
    naive = rows(store.get_features("g_pandas.*", point_in_time=moment), ["customer_id"])
    aware = rows(
        store.get_features(
            "g_pandas.*", point_in_time=moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(TOKYO)
        ),
        ["customer_id"],
    )
    assert naive == aware and len(naive) == 2  # customers 1 and 2 have events by then

    # A backfill of the same range, once with naive bounds, once with aware ones.
    data = zoned["events"]
    assert isinstance(data, pd.DataFrame)
    start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=12)
    inside = data[(data.event_timestamp >= start) & (data.event_timestamp < end)].copy()
    inside["spend"] = inside["spend"] + 0.5
    store.backfill("g_ntz", inside, start, end)
    store.backfill(
        "g_aware",
        inside,
        start.replace(tzinfo=ZoneInfo("UTC")).astimezone(NEW_YORK),
        end.replace(tzinfo=ZoneInfo("UTC")).astimezone(TOKYO),
    )
    after = [
        rows(store.read_table(g), ["customer_id", "event_timestamp"]) for g in ("g_ntz", "g_aware")
    ]
    assert after[0] == after[1]
    assert sum(1 for r in after[0] if r[2] % 1 == 0.5) == len(inside)


def test_duckdb_and_online_follow_the_same_rule(
    spark: SparkSession, zoned: dict[str, object]
) -> None:
    store, config = zoned["store"], zoned["config"]
    assert isinstance(store, MaterializedFeatureStore) and isinstance(config, FeatureStoreConfig)
    labels = pd.DataFrame(
        {"customer_id": [1, 2, 3], "label_time": [T0 + timedelta(hours=h) for h in (9, 20, 31)]}
    )
    aware = labels.copy()
    aware["label_time"] = aware["label_time"].dt.tz_localize("UTC").dt.tz_convert(TOKYO)
    reader = DuckDBFeatureReader(store.registry)
    by_spark = rows(store.get_training_set(labels, "g_parquet.*").df, ["customer_id"])
    for entities in (labels, aware):
        duck = reader.read(ReadRequest.historical("g_parquet.*"), entities)
        duck["label_time"] = pd.to_datetime(duck["label_time"], utc=True).dt.tz_localize(None)
        assert rows(duck, ["customer_id"]) == by_spark

    online = {}
    for form in ("pandas", "parquet"):
        memory = InMemoryOnlineStore(resolver=store.registry.get_group)
        sync_to_online(memory, store.registry, f"g_{form}", spark=spark)
        vectors = memory.get(f"g_{form}.*", [1, 2, 3, 4])
        online[form] = [(v.event_time("spend"), v.to_dict()) for v in vectors]
    assert online["pandas"] == online["parquet"]
    newest = events().groupby("customer_id").event_timestamp.max()
    assert [t for t, _ in online["pandas"]] == [newest[k].to_pydatetime() for k in (1, 2, 3, 4)]


def test_quality_rules_read_wall_clock_times_as_utc(spark: SparkSession) -> None:
    """Freshness over a TIMESTAMP_NTZ column, and an error naming a rule that cannot run."""
    frame = spark.createDataFrame(events()).withColumn(
        "event_timestamp", F.col("event_timestamp").cast("timestamp_ntz")
    )
    report = evaluate_checks(frame, group("g"), now=T0 + timedelta(hours=40))
    (fresh,) = [r for r in report.results if r.type == "freshness"]
    newest = events().event_timestamp.max()
    assert fresh.passed and fresh.observed == pytest.approx(
        (T0 + timedelta(hours=40) - newest).total_seconds()
    )
    flagged = frame.withColumn("tier", F.lit(True))  # a boolean cannot be compared with 0
    with pytest.raises(SchemaValidationError) as caught:
        evaluate_checks(flagged, group("g"), rules=[QualityRule("range", feature="tier", min=0)])
    assert "range rule" in caught.value.message and "'tier' of type boolean" in caught.value.message
    assert "sql rule" not in str(caught.value)


def test_time_literals_carry_the_utc_rule(spark: SparkSession) -> None:
    moment = T0 + timedelta(microseconds=5)
    aware = moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(NEW_YORK)
    (row,) = spark.sql(
        f"SELECT {sql_time_literal(moment)} = {sql_time_literal(aware)} AS same, "
        f"unix_micros({sql_time_literal(moment)}) AS us"
    ).collect()
    epoch = (moment - pd.Timestamp(0).to_pydatetime()) // timedelta(microseconds=1)
    assert row.same and row.us == epoch


def test_windows_over_a_source_of_wall_clock_times(
    spark: SparkSession, zoned: dict[str, object]
) -> None:
    """An aggregation group over a Delta path whose event times are TIMESTAMP_NTZ gives the
    windows of the same events stored as TIMESTAMP (naive means UTC)."""
    store, folder = zoned["store"], zoned["folder"]
    assert isinstance(store, MaterializedFeatureStore) and isinstance(folder, Path)
    data = events()
    as_utc = spark.createDataFrame(data)
    sources = {
        "utc": as_utc,
        "ntz": as_utc.withColumn("event_timestamp", F.col("event_timestamp").cast("timestamp_ntz")),
    }
    values = {}
    for name, frame in sources.items():
        path = folder / f"source_{name}"
        frame.write.format("delta").save(str(path))
        group_name = f"windows_{name}"
        store.register_features(
            FeatureGroupSchema.from_dict(
                {
                    "name": group_name,
                    "entity_keys": [{"name": "customer_id", "type": "bigint"}],
                    "event_source": {"path": str(path)},
                    "aggregations": [
                        {"column": "spend", "function": f, "windows": ["6h", "1d"]}
                        for f in ("sum", "count", "max")
                    ],
                }
            )
        )
        store.materialize_aggregations(group_name, T0 + timedelta(hours=20))
        values[name] = rows(store.read_table(group_name), ["customer_id"])
    assert values["ntz"] == values["utc"] and len(values["utc"]) == 4
