from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.errors import SchemaValidationError
from featurelake.quality import (
    QualityCheckError,
    attach_quality,
    check,
    check_history,
    evaluate_checks,
    quarantined_rows,
)
from featurelake.schema import FeatureGroupSchema
from featurelake.schema.model import CheckAction, GroupChecks, QualityRule
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

T0 = datetime(2024, 1, 1)
COLUMNS = "id bigint, event_timestamp timestamp, spend double, channel string"


def group(on_write: str = "warn", **extra: Any) -> FeatureGroupSchema:
    return FeatureGroupSchema.from_dict(
        {
            "name": "orders",
            "entity_keys": ["id"],
            "features": [
                {"name": "spend", "type": "double"},
                {"name": "channel", "type": "string"},
            ],
            "checks": {
                "on_write": on_write,
                "rules": [
                    {"type": "max_null_rate", "feature": "spend", "max_rate": 0.25},
                    {"type": "unique_keys"},
                    {"type": "sql", "name": "spend_positive", "expr": "spend > 0"},
                    {"type": "range", "feature": "spend", "min": 0, "max": 1000},
                    {"type": "allowed_values", "feature": "channel", "values": ["web", "app"]},
                    {"type": "not_null", "feature": "channel"},
                    {"type": "freshness", "max_age": "2d"},
                ],
            },
            **extra,
        }
    )


def frame(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    return spark.createDataFrame(rows, COLUMNS)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


GOOD = [
    (1, at(0), 10.0, "web"),
    (2, at(1), 20.0, "app"),
    (3, at(2), None, "web"),
    (4, at(3), 5.0, "app"),
]


def results(report: Any) -> dict[str, Any]:
    return {r.rule: r for r in report.results}


def test_rules_pass_on_a_good_batch(spark: SparkSession) -> None:
    report = evaluate_checks(frame(spark, GOOD), group(), now=at(24))
    assert report.total_rows == 4
    # the null spend breaks spend_positive (null fails a sql rule) but nothing else
    assert [r.rule for r in report.failed] == ["spend_positive"]
    null_rate = results(report)["max_null_rate_spend"]
    assert null_rate.passed and null_rate.observed == pytest.approx(0.25)
    assert results(report)["freshness"].observed == pytest.approx(21 * 3600)


def test_each_rule_fires(spark: SparkSession) -> None:
    bad = [
        (1, at(0), None, "web"),
        (1, at(0), None, "fax"),  # duplicate key+time, channel not allowed
        (2, at(1), -5.0, None),  # negative, null channel
        (3, at(2), 5000.0, "app"),  # above max
    ]
    report = evaluate_checks(frame(spark, bad), group(), now=at(24 * 10))
    got = results(report)
    assert not report.passed
    assert got["max_null_rate_spend"].observed == pytest.approx(0.5)
    assert not got["max_null_rate_spend"].passed
    assert got["unique_keys"].failing_rows == 2
    assert got["spend_positive"].failing_rows == 3
    assert got["range_spend"].failing_rows == 2
    assert got["allowed_values_channel"].failing_rows == 1
    assert got["not_null_channel"].failing_rows == 1
    assert not got["freshness"].passed
    sample = got["allowed_values_channel"].sample
    assert sample == [{"id": 1, "event_timestamp": "2024-01-01T00:00:00", "channel": "fax"}]
    assert len(got["spend_positive"].sample) == 3


def test_group_freshness_is_an_implicit_rule(spark: SparkSession) -> None:
    schema = FeatureGroupSchema(
        "orders",
        ["id"],
        [{"name": "spend", "type": "double"}, {"name": "channel", "type": "string"}],
        freshness="1h",
    )
    report = evaluate_checks(frame(spark, GOOD), schema, now=at(5))
    assert [r.rule for r in report.results] == ["freshness"]
    assert not report.passed


def test_checks_in_yaml_round_trip_and_are_validated() -> None:
    schema = group("quarantine")
    assert FeatureGroupSchema.from_dict(schema.to_dict()) == schema
    assert schema.checks is not None and schema.checks.on_write is CheckAction.QUARANTINE
    with pytest.raises(SchemaValidationError, match="does not have"):
        group().with_changes(checks={"rules": [{"type": "not_null", "feature": "nope"}]})
    with pytest.raises(SchemaValidationError, match="max_rate"):
        QualityRule("max_null_rate", feature="spend", max_rate=2)
    with pytest.raises(SchemaValidationError, match="on_write"):
        GroupChecks(on_write="explode")
    with pytest.raises(SchemaValidationError, match="unknown"):
        QualityRule.from_dict({"type": "sql", "expr": "x", "sql": "y"})


@pytest.fixture
def store(spark: SparkSession, store_config: FeatureStoreConfig) -> MaterializedFeatureStore:
    return MaterializedFeatureStore(StoreContext.of(store_config, spark))


def test_fail_action_stops_the_write(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    store.register_features(group("fail"))
    attach_quality(store, statistics_on_write=False, drift_on_write=False)
    store.write_features("orders", frame(spark, [(1, datetime.now(), 10.0, "web")]))
    before = len(store.history("orders"))
    with pytest.raises(QualityCheckError, match="spend_positive") as caught:
        store.write_features("orders", frame(spark, [(2, datetime.now(), -1.0, "web")]))
    assert caught.value.report.failed[0].failing_rows == 1
    assert len(store.history("orders")) == before
    reports = check_history(store.registry, "orders", 1)
    assert [r["passed"] for r in reports] == [True, False]


def test_warn_action_writes_and_records(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    store.register_features(group("warn"))
    gate = attach_quality(store, statistics_on_write=False, drift_on_write=False)
    result = store.write_features("orders", frame(spark, [(1, at(0), -1.0, "web")]))
    assert result.rows_written == 1
    assert gate.last_report is not None and not gate.last_report.passed
    assert gate.last_report.action == "warn"
    on_demand = check(store.registry, "orders", now=at(1), record=False)
    assert [r.rule for r in on_demand.failed] == ["spend_positive", "range_spend"]
    assert on_demand.delta_version == result.delta_version


def test_quarantine_keeps_every_row(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    store.register_features(group("quarantine"))
    gate = attach_quality(store, statistics_on_write=False, drift_on_write=False)
    now = datetime.now()
    rows = [
        (1, now, 10.0, "web"),
        (2, now, -3.0, "web"),  # spend_positive, range
        (3, now, 7.0, "fax"),  # allowed_values
        (4, now, 8.0, "app"),
        (4, now, 9.0, "app"),  # duplicates
        (5, now, 1.0, "app"),
    ]
    result = store.write_features("orders", frame(spark, rows))
    gold = store.read_table("orders")
    side = quarantined_rows(store.registry, "orders", spark)
    assert gold.count() == result.rows_written == 2
    assert side.count() == 4
    assert gold.count() + side.count() == len(rows)
    assert sorted(r["id"] for r in gold.collect()) == [1, 5]
    tags = {r["id"]: sorted(r["_failed_rules"]) for r in side.collect() if r["id"] != 4}
    assert tags == {2: ["range_spend", "spend_positive"], 3: ["allowed_values_channel"]}
    assert gate.last_report is not None and gate.last_report.quarantined_rows == 4


def test_backfill_writes_skip_freshness(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    from featurelake.quality import QualityGate
    from featurelake.registry import Registry

    schema = FeatureGroupSchema(
        "orders",
        ["id"],
        [{"name": "spend", "type": "double"}, {"name": "channel", "type": "string"}],
        freshness="1h",
        checks={"on_write": "fail"},
    )
    gate = QualityGate(Registry(store_config, spark), record=False)
    old = frame(spark, GOOD)
    assert gate(schema, old, "backfill") is old
    with pytest.raises(QualityCheckError, match="freshness"):
        gate(schema, old, "append")
