"""Seed 002 (a lakehouse feature store with materialized, virtualized, hybrid and online
strategies): its usage examples, in our words and data, on one `featurelake.FeatureStore` over
real Spark and Delta. Where featurelake deliberately differs, the typed error and its hint."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

import featurelake
from featurelake import FeatureStore, FeatureStoreConfig
from featurelake.config import FeatureStoreMode
from featurelake.errors import (
    AmbiguousFeatureError,
    ArgumentConflictError,
    ConfigurationError,
    FeatureMaterializationError,
    FeatureNotFoundError,
    FeatureRegistryError,
    FeatureStoreException,
    MetadataError,
    SchemaValidationError,
    VirtualizationQueryError,
)
from featurelake.pipeline import read_features_node, write_features_node
from featurelake.schema import DataType, FeatureGroupSchema, FeatureSchema, FeatureType

pytestmark = [pytest.mark.spark]

T0 = datetime(2024, 3, 1)

MEMBER_AGE = FeatureSchema(
    name="age",
    data_type=DataType.INT,
    feature_type=FeatureType.NUMERICAL,
    description="Member age in years",
    nullable=False,
    metadata={"unit": "years"},
)
MEMBERS = FeatureGroupSchema(
    name="member_features",
    version=1,
    entity_keys=["member_id"],
    timestamp_key="event_timestamp",
    description="Demographics of library members",
    features=[
        MEMBER_AGE,
        FeatureSchema("branch", DataType.STRING, FeatureType.CATEGORICAL),
        FeatureSchema("loans_total", DataType.DOUBLE, FeatureType.NUMERICAL),
    ],
    tags={"team": "circulation"},
)
# A second group that also has `age`, so the bare name "age" is ambiguous.
BOOKS = FeatureGroupSchema(
    "book_features",
    ["book_id"],
    [FeatureSchema("age", DataType.INT), FeatureSchema("pages", DataType.INT)],
)


def members_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["member_id", "event_timestamp", "age", "branch", "loans_total"]
    ).astype({"age": "int32"})


@pytest.fixture
def store(spark: SparkSession, tmp_path: Path) -> FeatureStore:
    """A store made the seed's way (a storage path), holding MEMBERS and BOOKS."""
    made = FeatureStore(storage_path=str(tmp_path / "gold"), spark=spark)
    made.register_features(MEMBERS)
    made.register_features(BOOKS)
    made.write_features(
        feature_group="member_features",
        data=members_frame(
            [
                (1, T0, 31, "north", 12.0),
                (2, T0, 45, "south", 3.0),
                (3, T0, 27, "north", 0.0),
                (1, T0 + timedelta(days=10), 32, "east", 15.0),
            ]
        ),
        mode="overwrite",
    )
    return made


def by_key(frame: Any, key: str) -> dict[Any, dict[str, Any]]:
    records = (
        frame.to_dict("records")
        if isinstance(frame, pd.DataFrame)
        else [r.asDict() for r in frame.collect()]
    )
    return {r[key]: r for r in records}


def test_the_seed_read_keywords_and_bare_feature_names(store: FeatureStore) -> None:
    # store.get_features(feature_names=[...], entity_ids={"user_id": [...]})
    latest = by_key(
        store.get_features(
            feature_names=["branch", "loans_total"], entity_ids={"member_id": [1, 2]}
        ),
        "member_id",
    )
    assert set(latest) == {1, 2}
    assert latest[1]["branch"] == "east" and latest[1]["loans_total"] == 15.0
    assert latest[2]["branch"] == "south"
    # Pattern 4: point in time, the value as it was then
    before = by_key(
        store.get_features(
            feature_names=["branch"],
            entity_ids={"member_id": [1]},
            point_in_time=T0 + timedelta(days=5),
        ),
        "member_id",
    )
    assert before[1]["branch"] == "north"
    # our own refs keep working, and mix with bare names
    mixed = store.get_features(["member_features.age", "branch"], [3], to_pandas=True)
    assert mixed[["age", "branch"]].values.tolist() == [[27, "north"]]
    # "age" is in two groups: a typed error listing both candidates
    with pytest.raises(AmbiguousFeatureError) as caught:
        store.get_features(feature_names=["age"], entity_ids={"member_id": [1]})
    assert caught.value.details["candidates"] == ["book_features.age", "member_features.age"]
    assert "member_features.age" in str(caught.value.fix)
    with pytest.raises(FeatureNotFoundError, match="No registered feature group"):
        store.get_features(feature_names=["no_such_feature"])
    with pytest.raises(ArgumentConflictError, match="both feature_refs= and feature_names="):
        store.get_features("member_features.age", feature_names=["branch"])


def test_write_features_with_the_seed_keywords_and_backfill(store: FeatureStore) -> None:
    table_rows = store.read_table("member_features").count()
    # backfill=True replaces exactly the span of the data's event times
    fixed = members_frame([(1, T0, 30, "north", 11.0), (3, T0, 28, "west", 1.0)])
    result = store.write_features(feature_group="member_features", data=fixed, backfill=True)
    assert result.rows_written == 2
    rows = store.read_table("member_features").toPandas()
    assert len(rows) == table_rows - 1  # three rows at T0 became two; the later one stays
    at_t0 = rows[rows.event_timestamp == T0].set_index("member_id")
    assert sorted(at_t0.index) == [1, 3] and at_t0.loc[3, "branch"] == "west"
    assert len(rows[rows.event_timestamp > T0]) == 1
    with pytest.raises(ArgumentConflictError, match="merge"):
        store.write_features("member_features", fixed, mode="merge", backfill=True)
    # a refused batch is the seed's SchemaValidationError, and a FeatureStoreException
    bad = members_frame([(9, T0, 40, "north", 1.0)]).drop(columns=["branch"])
    with pytest.raises(FeatureStoreException) as refused:
        store.write_features(feature_group="member_features", data=bad)
    assert isinstance(refused.value, SchemaValidationError)


def test_one_query_per_feature_is_joined_on_keys_and_event_time(
    spark: SparkSession, store: FeatureStore, tmp_path: Path
) -> None:
    people = tmp_path / "silver_people"
    loans = tmp_path / "silver_loans"
    spark.createDataFrame(
        pd.DataFrame(
            {
                "member_id": [1, 2, 1],
                "event_timestamp": [T0, T0, T0 + timedelta(days=2)],
                "birth_year": [1990, 1980, 1990],
            }
        )
    ).write.format("delta").save(str(people))
    spark.createDataFrame(
        pd.DataFrame(
            {
                "member_id": [1, 1, 2, 3],
                "event_timestamp": [T0, T0, T0, T0 + timedelta(days=1)],
                "book": ["a", "b", "c", "d"],
            }
        )
    ).write.format("delta").save(str(loans))
    activity = FeatureGroupSchema(
        "member_activity",
        ["member_id"],
        [FeatureSchema("age", "int"), FeatureSchema("loan_count", "bigint")],
    )
    store.register_features(activity)
    store.define_virtual_features(
        "member_activity",
        queries={
            "age": f"SELECT member_id, event_timestamp, CAST(2024 - birth_year AS INT) AS age "
            f"FROM delta.`{people}`",
            "loan_count": "SELECT member_id, event_timestamp, COUNT(*) AS loan_count "
            f"FROM delta.`{loans}` GROUP BY member_id, event_timestamp;",
        },
    )
    read = by_key(
        store.get_features(
            feature_names=["member_activity.age", "loan_count"],
            entity_ids={"member_id": [1, 2, 3]},
            point_in_time=T0 + timedelta(days=1),
            to_pandas=True,
        ),
        "member_id",
    )
    assert (read[1]["age"], read[1]["loan_count"]) == (34, 2)
    assert (read[2]["age"], read[2]["loan_count"]) == (44, 1)
    # member 3 has only a loan row: its age is null there (the join is outer)
    assert pd.isna(read[3]["age"]) and read[3]["loan_count"] == 1
    with pytest.raises(VirtualizationQueryError, match="no query for"):
        store.define_virtual_features(
            "member_activity", queries={"age": f"SELECT * FROM delta.`{people}`"}
        )


def test_constructors_and_config_keys_of_the_seed(spark: SparkSession, tmp_path: Path) -> None:
    nested = {
        "storage_path": str(tmp_path / "gold"),
        "mode": FeatureStoreMode.HYBRID,
        "materialized": {"storage_format": "delta"},
        "virtualized": {"executor_type": "duckdb"},
    }
    store = FeatureStore(nested, spark)
    assert store.config.virtual_engine == "duckdb"
    assert store.config.mode is featurelake.StoreMode.HYBRID
    by_path = FeatureStore(storage_path=str(tmp_path), query_executor="duckdb")
    assert by_path.config.virtual_engine == "duckdb"
    for section, key, value, hint in (
        ("materialized", "storage_format", "parquet", "Delta"),
        ("materialized", "cache_enabled", True, "enable_online_store"),
        ("virtualized", "enable_caching", True, "materialize"),
    ):
        with pytest.raises(ConfigurationError) as caught:
            FeatureStoreConfig.from_dict({"storage_path": "x", section: {key: value}}, environ={})
        assert f"{section}.{key}" in str(caught.value) and hint in str(caught.value.fix)
    with pytest.raises(ArgumentConflictError, match="application context"):
        FeatureStore(object())  # type: ignore[arg-type]
    # the per-strategy classes are parts of the one store, with the call to use instead
    with pytest.raises(AttributeError, match=r"featurelake\.FeatureStore"):
        featurelake.MaterializedFeatureStore  # noqa: B018


def test_health_check_is_falsy_when_unhealthy(store: FeatureStore, tmp_path: Path) -> None:
    health = store.health_check()
    assert health and health["healthy"] is True and health["offline"]["spark"] is True
    broken = FeatureStore(
        store.config.replace(
            enable_online_store=True, online_backend="redis", online_url="redis://127.0.0.1:1/0"
        ),
        store.offline.spark,
    )
    result = broken.health_check()
    assert not result  # `if store.health_check():` skips work on a broken store
    assert result["healthy"] is False and result["online"]["healthy"] is False
    assert "error" in result["online"]


def test_metadata_calls_and_the_seed_exception_names(store: FeatureStore) -> None:
    metadata = store.metadata
    assert "member_features" in metadata.list_feature_groups()
    assert metadata.list_features("member_features") == ["age", "branch", "loans_total"]
    assert metadata.get_feature("member_features", "age").description == "Member age in years"
    assert metadata.get_feature_group("member_features").tags == {"team": "circulation"}
    updated = metadata.get_last_updated("member_features")
    assert isinstance(updated, datetime)
    metadata.set_lineage("loans_total", ["silver.loans.amount", "member_features.branch"])
    assert metadata.get_lineage("member_features.loans_total") == [
        "silver.loans.amount",
        "member_features.branch",
    ]
    # the lineage is in the registry: another store on the same path sees it
    again = FeatureStore(store.config, store.offline.spark)
    assert again.metadata.get_lineage("member_features.loans_total")[0] == "silver.loans.amount"
    try:
        metadata.get_feature("member_features", "height")
    except FeatureNotFoundError as error:
        assert "age, branch, loans_total" in str(error)
    else:
        pytest.fail("get_feature of an unknown feature did not raise")
    assert FeatureRegistryError is MetadataError is featurelake.MetadataError
    assert issubclass(FeatureMaterializationError, FeatureStoreException)
    assert FeatureStoreException is featurelake.FeatureStoreError
    assert store.get_feature("member_features.branch").feature_type is FeatureType.CATEGORICAL


def test_pipeline_nodes_with_the_seed_parameters(store: FeatureStore) -> None:
    write = write_features_node(
        name="materialize_members",
        feature_store="materialized",
        feature_group="member_features",
        input_source="process_member_data",
        store=store,
    )
    read = read_features_node(
        name="fetch_training_features",
        feature_store="materialized",
        feature_names=["branch", "loans_total"],
        entity_ids_source="load_member_ids",
        store=store,
        as_pandas=True,
    )
    assert write.__name__ == "materialize_members" and write.inputs == ["process_member_data"]
    assert read.__name__ == "fetch_training_features" and read.inputs == ["load_member_ids"]
    summary = write(members_frame([(7, T0 + timedelta(days=20), 50, "west", 2.0)]))
    assert summary["rows_written"] == 1 and summary["group"] == "member_features"
    frame = read([7, 1])
    assert by_key(frame, "member_id")[7]["branch"] == "west"
    with pytest.raises(ConfigurationError, match="feature_store"):
        read_features_node(feature_names=["branch"], feature_store="cloud", store=store)
