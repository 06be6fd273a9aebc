from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.engines.spark.executor import SparkQueryExecutor
from featurelake.errors import (
    ConfigurationError,
    UnsupportedOperationError,
    VirtualizationQueryError,
)
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore
from featurelake.stores.virtualized import VirtualizedFeatureStore
from featurelake.virtual.checks import sql_relation_names
from featurelake.virtual.executors import (
    AnalysedQuery,
    QueryExecutor,
    VirtualQuery,
    create_query_executor,
)

T0 = datetime(2024, 1, 1)
VIEW = "vt_silver_spend"
SILVER_COLUMNS = "customer_id bigint, ts timestamp, amount double, seg string, visits int"
QUERY = f"SELECT customer_id, ts AS event_timestamp, amount, seg, visits FROM {VIEW}"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def schema(name: str) -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        features=[
            FeatureSchema("amount", "double"),
            FeatureSchema("seg", "string"),
            FeatureSchema("visits", "bigint"),
        ],
        ttl="2d",
    )


SILVER_ROWS = [
    (c, day(d), float(c * 10 + d), "abc"[(c + d) % 3], c + d)
    for c in range(1, 13)
    for d in range(4)
] + [
    (1, day(2), 5.0, "z", 1),  # same key and time as (1, day 2, 12.0): the greater row wins
    (2, day(4), 99.0, None, 2),  # latest event of 2 has a null segment
    (3, day(4), None, "b", 3),  # latest event of 3 has a null amount
]


def spend_query(spark: SparkSession) -> DataFrame:
    """A virtual query as a module-level function (importable by a fresh store)."""
    return spark.table(VIEW).selectExpr(
        "customer_id", "ts AS event_timestamp", "amount", "seg", "visits"
    )


@dataclass
class Env:
    spark: SparkSession
    config: FeatureStoreConfig
    virtual: VirtualizedFeatureStore
    materialized: MaterializedFeatureStore
    silver_path: str


@pytest.fixture(scope="module")
def env(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("virtualized")
    silver_path = str(root / "silver")
    silver = spark.createDataFrame(SILVER_ROWS, SILVER_COLUMNS)
    silver.repartition(3).write.format("delta").save(silver_path)
    spark.read.format("delta").load(silver_path).createOrReplaceTempView(VIEW)
    config = FeatureStoreConfig(storage_path=str(root / "store"), metadata_cache_ttl_seconds=60)
    virtual = VirtualizedFeatureStore(StoreContext.of(config, spark))
    virtual.define_virtual_features(schema("spend_v"), QUERY)
    materialized = MaterializedFeatureStore(StoreContext.of(config, spark, virtual.registry))
    materialized.register_features(schema("spend_m"))
    materialized.write_features("spend_m", silver.withColumnRenamed("ts", "event_timestamp"))
    yield Env(spark, config, virtual, materialized, silver_path)
    spark.catalog.dropTempView(VIEW)


def rows(frame: DataFrame) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in frame.collect()), key=repr)


def test_definition_is_checked_without_jobs_and_persisted(
    env: Env, spark_jobs: Any, spark_mode: str
) -> None:
    with spark_jobs.started() as jobs:
        definition = env.virtual.define_virtual_features(schema("spend_def"), QUERY)
    # Parsed and analysed only: no Spark job ran. Over Spark Connect there is no plan to read,
    # so the folder behind a view comes from inputFiles(), a file listing.
    assert jobs == [] or spark_mode == "connect"
    assert definition.sources == (VIEW,)
    assert definition.source_paths == (env.silver_path,)
    assert dict(definition.columns)["visits"] == "int"
    fresh = VirtualizedFeatureStore(StoreContext.of(env.config, env.spark))
    assert fresh.definition("spend_def") == definition
    assert [d.group for d in fresh.list_definitions()] == ["spend_def", "spend_v"]
    lineage = fresh.registry.group_state("spend_def").lineage
    assert lineage[-1]["sources"] == [VIEW] and lineage[-1]["query"] == QUERY
    assert rows(fresh.get_features("spend_def.visits", [4])) == [(4, day(3), 7)]


def test_query_text_names_its_sources_without_spark() -> None:
    query = """
        WITH recent AS (SELECT * FROM silver_orders WHERE ts > '2024-01-01')
        SELECT r.customer_id, p.segment
        FROM recent r JOIN main.crm.profiles p ON r.customer_id = p.customer_id
        JOIN delta.`/data/silver/visits` v ON v.customer_id = r.customer_id
    """
    assert set(sql_relation_names(query)) == {
        "silver_orders",
        "main.crm.profiles",
        "delta.`/data/silver/visits`",
    }
    assert sql_relation_names("SELECT 1 AS x") == ()


def test_latest_values_match_the_materialized_group(env: Env) -> None:
    assert rows(env.virtual.get_features("spend_v.*")) == rows(
        env.materialized.get_features("spend_m.*")
    )
    assert rows(env.virtual.get_features("spend_v.*", [1, 2, 3])) == [
        (1, day(3), 13.0, "b", 4),
        (2, day(4), 99.0, None, 2),
        (3, day(4), None, "b", 3),
    ]
    for ids, when in (([1, 2, 3, 99], day(2)), (pd.DataFrame({"customer_id": [1, 5]}), day(0))):
        virtual = env.virtual.get_features(["spend_v.amount", "spend_v.seg"], ids, when)
        gold = env.materialized.get_features(["spend_m.amount", "spend_m.seg"], ids, when)
        assert rows(virtual) == rows(gold)
    # The exact tie at (1, day 2) resolves to the greatest values, in both stores.
    assert rows(env.virtual.get_features("spend_v.amount", [1], day(2.5))) == [(1, day(2), 12.0)]


def test_point_in_time_reads_match_the_materialized_group(env: Env) -> None:
    entities = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 3, 4, 7, 99],
            "event_timestamp": [day(-1), day(2), day(4), day(4.5), day(6.5), day(1.5), day(2)],
            "label": [0, 1, 0, 1, 0, 1, 1],
        }
    )
    virtual = env.virtual.get_training_set(entities, "spend_v.*")
    gold = env.materialized.get_training_set(entities, "spend_m.*")
    assert rows(virtual.df) == rows(gold.df)
    got = {(r.customer_id, r.event_timestamp): (r.amount, r.visits) for r in virtual.df.collect()}
    assert got[(1, day(-1))] == (None, None)  # before the first event
    assert got[(1, day(2))] == (12.0, 3)  # event time equal to the entity time counts
    assert got[(4, day(6.5))] == (None, None)  # the last event (day 3) is beyond the 2d ttl
    assert virtual.manifest.virtual_groups == ("spend_v@1",)
    assert virtual.manifest.tables == ()
    filled = env.virtual.get_historical_features(entities, "spend_v.amount", fill="last_non_null")
    assert {(r.customer_id, r.event_timestamp): r.amount for r in filled.collect()}[
        (3, day(4.5))
    ] == 33.0


def test_filters_reach_the_source_scan(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    env.virtual.get_features("spend_v.amount", [1, 2], day(2)).explain(mode="formatted")
    plan = capsys.readouterr().out
    pushed = [line for line in plan.splitlines() if line.startswith("PushedFilters")]
    assert any("In(customer_id, [1,2])" in line for line in pushed), plan
    assert any("LessThanOrEqual(ts," in line for line in pushed), plan


BAD_QUERIES = [
    ("parse error", f"SELEC customer_id FROM {VIEW}", "does not parse", {"position": 0}),
    (
        "unknown table",
        "SELECT customer_id, ts AS event_timestamp, amount, seg, visits FROM vt_no_such_table",
        "does not exist",
        {"table": "vt_no_such_table", "condition": "TABLE_OR_VIEW_NOT_FOUND"},
    ),
    (
        "unknown column",
        f"SELECT customer_id, ts AS event_timestamp, amount, seg, visitz AS visits FROM {VIEW}",
        "column that does not exist",
        {"column": "visitz"},
    ),
    (
        "missing column",
        f"SELECT customer_id, ts AS event_timestamp, amount, visits FROM {VIEW}",
        "lacks the column(s) 'seg'",
        {"missing": ["seg"]},
    ),
    (
        "extra column",
        f"SELECT customer_id, ts AS event_timestamp, amount, seg, visits, 1 AS x FROM {VIEW}",
        "does not declare: x",
        {"extra": ["x"]},
    ),
    (
        "wrong type",
        f"SELECT customer_id, ts AS event_timestamp, CAST(amount AS string) AS amount, seg, "
        f"CAST(visits AS double) AS visits FROM {VIEW}",
        "'amount' is string but must be double; 'visits' is double but must be bigint",
        {"columns": ["amount", "visits"]},
    ),
    ("a statement", f"DROP VIEW {VIEW}", "does not parse", {}),
    ("two statements", f"{QUERY}; {QUERY}", "does not parse", {}),
]


@pytest.mark.parametrize(
    ("case", "query", "message", "details"), BAD_QUERIES, ids=[b[0] for b in BAD_QUERIES]
)
def test_bad_queries_raise_the_typed_error(
    env: Env, case: str, query: str, message: str, details: dict[str, Any]
) -> None:
    with pytest.raises(VirtualizationQueryError) as raised:
        env.virtual.define_virtual_features(schema("bad"), query)
    error = raised.value
    assert message in error.message and "'bad'" in error.message
    assert error.fix and "Fix:" in str(error)
    for key, value in details.items():
        assert error.details[key] == value
    assert env.virtual.registry.versions("bad") == []  # nothing was registered
    assert env.spark.catalog.tableExists(VIEW)  # a statement is never run


def jvm_query(spark: SparkSession) -> DataFrame:
    """A query function that reaches for the JVM (fine on classic, absent over Connect)."""
    spark.sparkContext.setLocalProperty("featurelake.test", "jvm")
    return spark.sql(QUERY)


def test_a_jvm_only_query_is_a_typed_error_over_connect(env: Env, spark_mode: str) -> None:
    if spark_mode != "connect":  # a classic driver, in this process or on a cluster
        env.virtual.define_virtual_features(schema("spend_jvm"), jvm_query)
        assert rows(env.virtual.get_features("spend_jvm.visits", [5])) == [(5, day(3), 8)]
        return
    with pytest.raises(UnsupportedOperationError) as info:
        env.virtual.define_virtual_features(schema("spend_jvm"), jvm_query)
    error = info.value
    assert "`sparkContext`" in error.message and "Spark Connect" in error.message
    assert error.details == {"operation": "sparkContext", "group": "spend_jvm"}
    assert "spark.sql" in (error.fix or "")
    assert env.virtual.registry.versions("spend_jvm") == []


def test_query_functions_and_the_seed_call_shape(env: Env) -> None:
    by_function = env.virtual.define_virtual_features(schema("spend_fn"), spend_query)
    assert by_function.function is not None and by_function.function.endswith(":spend_query")
    fresh = VirtualizedFeatureStore(StoreContext.of(env.config, env.spark))
    assert rows(fresh.get_features("spend_fn.amount", [5])) == [(5, day(3), 53.0)]

    env.virtual.define_virtual_features(schema("spend_lambda"), lambda s: spend_query(s))
    assert rows(env.virtual.get_features("spend_lambda.visits", [5])) == [(5, day(3), 8)]
    with pytest.raises(VirtualizationQueryError, match="cannot be imported here"):
        VirtualizedFeatureStore(StoreContext.of(env.config, env.spark)).get_features(
            "spend_lambda.visits"
        )

    same = {"amount": QUERY, "seg": QUERY, "visits": QUERY}
    assert env.virtual.define_virtual_features(schema("spend_seed"), queries=same).query == QUERY
    # different queries per feature are joined on keys and event time (tests/seeds); a set
    # that leaves a feature out names it
    with pytest.raises(VirtualizationQueryError, match="no query for"):
        env.virtual.define_virtual_features(schema("spend_seed"), queries={"amount": QUERY})


class FailingExecutor(QueryExecutor):
    """An engine that is always down: the base class must wrap its failures."""

    name = "failing"

    def __init__(self, spark: SparkSession) -> None:
        super().__init__()

    def _analyse(self, query: VirtualQuery) -> AnalysedQuery:
        raise RuntimeError("engine is down")

    def _execute(self, query: VirtualQuery) -> DataFrame:
        raise RuntimeError("engine is down")


def test_executors_by_name_and_error_wrapping(env: Env) -> None:
    assert isinstance(create_query_executor("spark", env.spark), SparkQueryExecutor)
    with pytest.raises(ConfigurationError, match="Unknown query executor 'duckdbx'"):
        create_query_executor("duckdbx", env.spark)
    path = f"{FailingExecutor.__module__}.FailingExecutor"
    executor = create_query_executor(path, env.spark)
    with pytest.raises(VirtualizationQueryError) as raised:
        executor.analyse("orders", VirtualQuery(sql="SELECT 1"))
    assert "group 'orders'" in str(raised.value) and "failing engine" in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert executor.timings()["analyse"]["failures"] == 1
    store = VirtualizedFeatureStore(StoreContext.of(env.config, env.spark), executor=executor)
    with pytest.raises(VirtualizationQueryError, match="engine is down"):
        store.define_virtual_features(schema("spend_failing"), QUERY)
    assert env.virtual.executor().timings()["analyse"]["calls"] >= 1


def test_a_group_change_the_query_does_not_follow_is_reported(env: Env) -> None:
    original = schema("spend_evolve")
    env.virtual.define_virtual_features(original, QUERY)
    evolved = original.with_changes(features=[*original.features, FeatureSchema("clv", "double")])
    assert env.virtual.register_features(evolved).action == "updated"
    with pytest.raises(VirtualizationQueryError, match=r"lacks the column\(s\) 'clv'"):
        env.virtual.get_features("spend_evolve.amount")
