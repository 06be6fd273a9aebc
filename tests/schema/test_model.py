from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from featurelake.errors import FeatureNotFoundError, SchemaValidationError
from featurelake.schema import (
    FeatureGroupSchema,
    FeatureRef,
    FeatureSchema,
    FeatureType,
    SchemaChange,
    classify_change,
    load_group_file,
    load_groups,
    parse_duration,
    parse_refs,
)

REPO = Path(__file__).resolve().parents[2]


def group(**changes: object) -> FeatureGroupSchema:
    base: dict[str, object] = {
        "name": "customer",
        "entity_keys": ["customer_id"],
        "features": [
            FeatureSchema("age", "int", min_value=0, max_value=130),
            FeatureSchema("segment", "string", allowed_values=["a", "b"]),
        ],
    }
    base.update(changes)
    return FeatureGroupSchema(**base)  # type: ignore[arg-type]


def test_group_defaults_and_round_trip() -> None:
    schema = group(ttl="30d", tags=["pii"], freshness=3600)
    assert schema.timestamp_key == "event_timestamp"
    assert schema.ttl == timedelta(days=30)
    assert schema.freshness == timedelta(hours=1)
    assert schema.tags == {"pii": ""}
    assert schema.feature("age").feature_type is FeatureType.NUMERICAL
    assert schema.feature("segment").feature_type is FeatureType.CATEGORICAL
    again = FeatureGroupSchema.from_dict(schema.to_dict())
    assert again == schema
    assert again.fingerprint() == schema.fingerprint()
    assert FeatureGroupSchema.from_json(schema.to_json()) == schema


def test_schemas_are_immutable() -> None:
    schema = group()
    with pytest.raises(AttributeError):
        schema.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "name is empty"),
        ({"name": "bad name"}, "not a valid identifier"),
        ({"entity_keys": []}, "no entity keys"),
        ({"entity_keys": ["id", "id"]}, "twice"),
        ({"features": []}, "no features"),
        ({"features": [FeatureSchema("a", "int"), FeatureSchema("a", "int")]}, "twice"),
        ({"features": [FeatureSchema("customer_id", "int")]}, "both a key and a feature"),
        ({"timestamp_key": "customer_id"}, "both an entity key and the timestamp"),
        ({"version": 0}, "version"),
        ({"partition_columns": ["nope"]}, "partitions by 'nope'"),
        ({"ttl": "soon"}, "not a positive duration"),
        ({"entity_key_types": {"customer_id": "array<int>"}}, "must be atomic"),
    ],
)
def test_invalid_groups_raise(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaValidationError, match=message):
        group(**changes)


def test_reserved_column_name_is_refused() -> None:
    with pytest.raises(SchemaValidationError, match="reserved"):
        FeatureSchema("_ingested_at", "int")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "data_type": "string", "min_value": 1}, "not numeric"),
        ({"name": "x", "data_type": "int", "min_value": 5, "max_value": 1}, "greater than max"),
        ({"name": "x", "data_type": "int", "feature_type": "fancy"}, "feature type"),
        ({"name": "1x", "data_type": "int"}, "not a valid identifier"),
        ({"name": "x", "data_type": "array<int>", "allowed_values": [1]}, "not atomic"),
    ],
)
def test_invalid_features_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaValidationError, match=message):
        FeatureSchema(**kwargs)  # type: ignore[arg-type]


def test_unknown_yaml_keys_are_named() -> None:
    with pytest.raises(SchemaValidationError, match=r"entity_key\b|unknown key"):
        FeatureGroupSchema.from_dict({"name": "g", "entity_key": ["id"], "features": []})


def test_unknown_feature_is_typed_error() -> None:
    with pytest.raises(FeatureNotFoundError, match="has no feature 'height'"):
        group().feature("height")


def test_load_shipped_example_groups() -> None:
    groups = load_groups(REPO / "conf" / "features")
    names = {g.name for g in groups}
    assert {"customer_profile", "transaction_aggregates"} <= names
    profile = next(g for g in groups if g.name == "customer_profile")
    assert profile.entity_key_types["customer_id"].simple_string() == "bigint"
    assert profile.feature("segment").allowed_values == ("bronze", "silver", "gold", "platinum")


def test_yaml_file_with_a_list_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "- name: g1\n  entity_keys: [id]\n  features: [{name: x, type: double}]\n"
        "- name: g2\n  entity_keys: [id]\n  features: [{name: y, type: int}]\n"
    )
    assert [g.name for g in load_group_file(tmp_path / "a.yaml")] == ["g1", "g2"]
    (tmp_path / "b.yml").write_text(
        "name: g1\nentity_keys: [id]\nfeatures: [{name: z, type: int}]\n"
    )
    with pytest.raises(SchemaValidationError, match="defined in both"):
        load_groups(tmp_path)
    (tmp_path / "b.yml").write_text("name: g3\nentity_keys: [id]\nfeatures: [{name: z}]\n")
    with pytest.raises(SchemaValidationError, match=r"b\.yml.*has no type"):
        load_groups(tmp_path)


def test_evolution_rules() -> None:
    old = group()
    assert classify_change(old, group()) is SchemaChange.UNCHANGED
    added = group(
        features=[*old.features, FeatureSchema("score", "double")], description="now with score"
    )
    assert classify_change(old, added) is SchemaChange.COMPATIBLE
    retyped = group(features=[FeatureSchema("age", "bigint"), old.features[1]])
    with pytest.raises(SchemaValidationError, match="bump the group version to 2"):
        classify_change(old, retyped)
    with pytest.raises(SchemaValidationError, match="was removed"):
        classify_change(old, group(features=[old.features[0]]))
    with pytest.raises(SchemaValidationError, match="entity keys changed"):
        classify_change(old, group(entity_keys=["other_id"]))
    with pytest.raises(SchemaValidationError, match="not nullable"):
        classify_change(
            old, group(features=[*old.features, FeatureSchema("z", "int", nullable=False)])
        )


def test_feature_refs() -> None:
    assert FeatureRef.parse("g.f") == FeatureRef("g", "f")
    assert FeatureRef.parse("g@3.f") == FeatureRef("g", "f", 3)
    assert FeatureRef.parse("g.*").is_wildcard
    assert str(FeatureRef.parse("g@3.f")) == "g@3.f"
    for bad in ["g", "g.", ".f", "g.f.h", "g@x.f"]:
        with pytest.raises(FeatureNotFoundError, match="not a feature reference"):
            FeatureRef.parse(bad)
    with pytest.raises(FeatureNotFoundError, match="No feature references"):
        parse_refs([])


def test_durations() -> None:
    assert parse_duration("12h", what="ttl") == timedelta(hours=12)
    assert parse_duration("2w", what="ttl") == timedelta(weeks=2)
    assert parse_duration(90, what="ttl") == timedelta(seconds=90)
    for bad in ["0s", "-1d", "day", True]:
        with pytest.raises(SchemaValidationError):
            parse_duration(bad, what="ttl")  # type: ignore[arg-type]
