"""Seed 001 (the specification of the in-process typed store): its method tables, run on
`featurelake.FeatureStore` and `FeatureService`, in memory and on a real Redis server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from featurelake import FeatureService, FeatureStore, FeatureTransform, FeatureVector
from featurelake.errors import ArgumentConflictError
from featurelake.schema import FeatureGroupSchema, FeatureSchema

TRIP = FeatureGroupSchema(
    "trip",
    ["rider_id"],
    [
        FeatureSchema("distance_km", value_type="FLOAT", feature_type="NUMERIC", default_value=0.0),
        FeatureSchema("city", value_type="STRING", feature_type="CATEGORICAL", default_value="?"),
        FeatureSchema("rides", value_type="INT", feature_type="NUMERIC", tags=["count", "daily"]),
    ],
)


@pytest.fixture
def service(online_store_of: Callable[..., FeatureStore]) -> FeatureService:
    store = online_store_of(online_history_size=4)
    doubled = FeatureTransform().add("distance_km", lambda v: v * 2)
    made = FeatureService(store, transform=doubled)
    made.register_group(TRIP)
    return made


def test_store_methods(service: FeatureService) -> None:
    store = service.store
    # register_feature: featurelake registers groups; the error shows the call to use
    with pytest.raises(ArgumentConflictError) as caught:
        store.register_feature(TRIP.feature("rides"))
    assert "register_features(FeatureGroupSchema(" in str(caught.value.fix)
    # set_value / get_value: versions start at 1 and count each write
    assert store.get_value("rides", "ada") is None
    store.set_value("rides", "ada", 1)
    store.set_value("rides", "ada", 2)
    value = store.get_value("rides", "ada")
    assert value is not None and (value.value, value.version) == (2, 2)
    # get_vector: several features, defaults where nothing is stored
    vector = store.get_vector("ada", ["distance_km", "city", "rides"])
    assert isinstance(vector, FeatureVector)
    assert vector.get("rides") == 2 and vector.get("city") == "?"
    assert vector.to_list() == [0.0, "?", 2]
    # list_features: every registered definition
    assert [(f.name, f.tags) for f in store.list_features()] == [
        ("distance_km", ()),
        ("city", ()),
        ("rides", ("count", "daily")),
    ]
    # delete_value: True when there was a value
    assert store.delete_value("rides", "ada") is True
    assert store.delete_value("rides", "ada") is False


def test_service_methods(service: FeatureService) -> None:
    service.ingest({"distance_km": 3.5, "city": "Lyon"}, "ada")
    processed = service.ingest_batch(
        [
            {"rider_id": "bo", "distance_km": 1.0, "rides": 4},
            {"rider_id": "cy", "distance_km": 8.0},
            {"distance_km": 2.0},  # no rider_id: skipped
        ],
        "rider_id",
    )
    assert int(processed) == 2
    plain = service.get_features("ada", ["distance_km", "city"], apply_transform=False)
    assert isinstance(plain, FeatureVector) and plain.to_list() == [3.5, "Lyon"]
    transformed = service.get_features("ada", ["distance_km", "city"], apply_transform=True)
    assert isinstance(transformed, FeatureVector) and transformed.to_list() == [7.0, "Lyon"]
    whole = service.get_group_features("bo", "trip")
    assert whole.to_dict() == {"distance_km": 1.0, "city": "?", "rides": 4}
    # ingested values are versioned like set_value's
    service.ingest({"distance_km": 4.0}, "ada")
    history = service.store.get_value_history("distance_km", "ada")
    assert [(v.version, v.value) for v in history] == [(2, 4.0), (1, 3.5)]
    assert all(v.age_seconds is not None and v.age_seconds >= 0 for v in history)
