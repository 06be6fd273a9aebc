"""Declaring aggregation groups and composite features (YAML and Python)."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelake.errors import SchemaValidationError
from featurelake.schema import FeatureGroupSchema, load_group_file
from featurelake.schema.aggregations import Aggregation, AggregationSource, CompositeFeature
from featurelake.schema.evolution import classify_change

YAML = """
name: customer_purchases
entity_keys: [customer_id]
event_source: purchases
aggregations:
  - {column: amount, function: sum, windows: [1d, 7d, 30d]}
  - {column: amount, function: max, windows: [7d], type: double}
  - {column: "*", function: count, windows: [7d], filter: "amount > 100", name: big_orders_7d}
  - {column: item_id, function: approx_count_distinct, windows: [30d]}
composites:
  - name: avg_big_order_share
    expression: "big_orders_7d / NULLIF(amount_sum_7d, 0)"
"""


def test_yaml_group_with_aggregations_and_composites(tmp_path: Path) -> None:
    path = tmp_path / "purchases.yaml"
    path.write_text(YAML)
    (group,) = load_group_file(path)
    assert group.event_source == AggregationSource("group", "purchases")
    assert group.feature_names == (
        "amount_sum_1d",
        "amount_sum_7d",
        "amount_sum_30d",
        "amount_max_7d",
        "big_orders_7d",
        "item_id_approx_count_distinct_30d",
    )
    types = {f.name: f.data_type.simple_string() for f in group.features}
    assert types["big_orders_7d"] == "bigint" and types["amount_sum_7d"] == "double"
    (composite,) = group.composites
    assert composite.source_features == ("big_orders_7d", "amount_sum_7d")
    again = FeatureGroupSchema.from_dict(group.to_dict())
    assert again == group and again.fingerprint() == group.fingerprint()
    assert "features" not in group.to_dict()


def test_python_declaration_and_names() -> None:
    aggregation = Aggregation("amount", "avg", ["1h", "2d"], name="spend")
    assert [n for n, _ in aggregation.outputs()] == ["spend_1h", "spend_2d"]
    assert Aggregation("amount", "sum", "14d").outputs()[0][0] == "amount_sum_14d"
    assert AggregationSource.parse({"path": "/lake/silver/events"}).kind == "path"
    assert AggregationSource.parse("silver.events") == AggregationSource("table", "silver.events")
    assert AggregationSource.parse("purchases@2") == AggregationSource("group", "purchases@2")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"function": "median"}, "function 'median'"),
        ({"column": "*", "function": "sum"}, "only count"),
        ({"windows": []}, "no windows"),
        ({"windows": ["7d", "1w"]}, "twice"),
        ({"windows": ["1.5s"]}, "whole number of seconds"),
        ({"filter": "amount > (SELECT 1)"}, "query"),
        ({"filter": "sum(amount) > 1"}, "aggregate"),
        ({"filter": "amount >"}, "not valid SQL"),
        ({"function": "sum", "type": "int"}, "declares a type"),
    ],
)
def test_bad_aggregations_are_refused(change: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {"column": "amount", "function": "sum", "windows": ["7d"], **change}
    with pytest.raises(SchemaValidationError, match=message):
        Aggregation.from_dict(spec)


def test_bad_groups_are_refused() -> None:
    base = {"name": "g", "entity_keys": ["k"]}
    aggs = [{"column": "x", "function": "sum", "windows": ["1d"]}]
    with pytest.raises(SchemaValidationError, match="no event_source"):
        FeatureGroupSchema.from_dict({**base, "aggregations": aggs})
    with pytest.raises(SchemaValidationError, match="no aggregations"):
        FeatureGroupSchema.from_dict(
            {**base, "event_source": "s", "features": [{"name": "a", "type": "int"}]}
        )
    with pytest.raises(SchemaValidationError, match="beside aggregations"):
        FeatureGroupSchema.from_dict(
            {
                **base,
                "event_source": "s",
                "aggregations": aggs,
                "features": [{"name": "a", "type": "int"}],
            }
        )
    with pytest.raises(SchemaValidationError, match="not a feature of the group"):
        FeatureGroupSchema.from_dict(
            {
                **base,
                "event_source": "s",
                "aggregations": aggs,
                "composites": [{"name": "c", "expression": "y * 2"}],
            }
        )
    with pytest.raises(SchemaValidationError, match="composites cannot read composites"):
        FeatureGroupSchema.from_dict(
            {
                **base,
                "event_source": "s",
                "aggregations": aggs,
                "composites": [
                    {"name": "c", "expression": "x_sum_1d * 2"},
                    {"name": "d", "expression": "c + 1"},
                ],
            }
        )
    with pytest.raises(SchemaValidationError, match="UPPER"):
        CompositeFeature("c", "UPPER(x_sum_1d)")
    with pytest.raises(SchemaValidationError, match="declares source_features"):
        CompositeFeature("c", "a + b", source_features=["a"])


def test_changing_what_an_aggregation_means_needs_a_new_version() -> None:
    base = {"name": "g", "entity_keys": ["k"], "event_source": "s"}
    old = FeatureGroupSchema.from_dict(
        {**base, "aggregations": [{"column": "x", "function": "sum", "windows": ["1d"]}]}
    )
    added = FeatureGroupSchema.from_dict(
        {**base, "aggregations": [{"column": "x", "function": "sum", "windows": ["1d", "7d"]}]}
    )
    assert classify_change(old, added).value == "compatible"
    refiltered = FeatureGroupSchema.from_dict(
        {
            **base,
            "aggregations": [
                {"column": "x", "function": "sum", "windows": ["1d"], "filter": "x > 0"}
            ],
        }
    )
    with pytest.raises(SchemaValidationError, match="x_sum_1d"):
        classify_change(old, refiltered)
    with pytest.raises(SchemaValidationError, match="event_source"):
        classify_change(old, old.with_changes(event_source="other"))
