"""Seed 000 (an in-process typed feature store): typed definitions, versioned values per
entity, vectors with default fallback, groups, batch ingestion and transforms, on one
`featurelake.FeatureStore` whose online part is in memory or on a real Redis server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from featurelake import FeatureService, FeatureStore, FeatureTransform
from featurelake.schema import FeatureGroupSchema, FeatureSchema, FeatureType

READER = FeatureGroupSchema(
    "reader",
    ["reader_id"],
    [
        FeatureSchema(
            "pages_read", value_type="INT", feature_type="NUMERIC", default_value=0, tags=["usage"]
        ),
        FeatureSchema(
            "genre", value_type="STRING", feature_type="CATEGORICAL", default_value="unknown"
        ),
        FeatureSchema("taste", value_type="LIST", feature_type="EMBEDDING"),
        FeatureSchema("subscribed", value_type="BOOL", feature_type="BOOLEAN"),
        FeatureSchema("last_seen", data_type="timestamp", feature_type="TIMESTAMP"),
        FeatureSchema("prefs", value_type="DICT", feature_type="TEXT"),
    ],
)


def test_feature_and_value_types_map_onto_ours() -> None:
    kinds = {f.name: (f.feature_type, f.data_type.simple_string()) for f in READER.features}
    assert kinds == {
        "pages_read": (FeatureType.NUMERICAL, "bigint"),
        "genre": (FeatureType.CATEGORICAL, "string"),
        "taste": (FeatureType.VECTOR, "array<double>"),
        "subscribed": (FeatureType.CATEGORICAL, "boolean"),
        "last_seen": (FeatureType.TIMESERIES, "timestamp"),
        "prefs": (FeatureType.TEXT, "map<string,string>"),
    }
    pages = READER.feature("pages_read")
    assert (pages.default_value, pages.tags) == (0, ("usage",))
    # the definition round-trips through the registry's form
    assert FeatureGroupSchema.from_dict(READER.to_dict()) == READER
    with pytest.raises(Exception, match="value type") as caught:
        FeatureSchema("x", value_type="COMPLEX_NUMBER")
    assert "INT, FLOAT, STRING, BOOL, LIST, DICT" in str(caught.value)


def test_each_write_gets_the_next_version_and_history_is_kept(
    online_store_of: Callable[..., FeatureStore],
) -> None:
    store = online_store_of(online_history_size=3)
    store.register_features(READER)
    assert store.get_value("pages_read", "r1") is None
    for pages in (10, 20, 30, 40):
        assert store.set_value("pages_read", "r1", pages) is True
    value = store.get_value("reader.pages_read", "r1")
    assert value is not None
    assert (value.value, value.version) == (40, 4)
    assert isinstance(value.timestamp, datetime)
    assert value.age_seconds is not None and 0 <= value.age_seconds < 60
    history = store.get_value_history("pages_read", "r1")
    assert [(v.version, v.value) for v in history] == [(4, 40), (3, 30), (2, 20)]  # last 3
    assert [v.version for v in store.get_value_history("pages_read", "r1", limit=2)] == [4, 3]
    # an older event never overwrites a newer one, and is not a version
    old = datetime.now() - timedelta(days=1)
    assert store.set_value("pages_read", "r1", 1, event_time=old) is False
    assert store.get_value("pages_read", "r1").value == 40  # type: ignore[union-attr]
    # versions are per feature and entity
    store.set_value("genre", "r1", "poetry")
    store.set_value("pages_read", "r2", 5)
    assert store.get_value("genre", "r1").version == 1  # type: ignore[union-attr]
    assert store.get_value("pages_read", "r2").version == 1  # type: ignore[union-attr]


def test_without_history_values_still_read_back(
    online_store_of: Callable[..., FeatureStore],
) -> None:
    store = online_store_of()  # online_history_size: 0
    store.register_features(READER)
    store.set_value("pages_read", "r1", 7)
    store.set_value("pages_read", "r1", 8)
    value = store.get_value("pages_read", "r1")
    assert value is not None and value.value == 8 and value.version is None
    assert [v.value for v in store.get_value_history("pages_read", "r1")] == [8]


def test_vectors_fall_back_to_default_values(online_store_of: Callable[..., FeatureStore]) -> None:
    store = online_store_of(online_history_size=2)
    store.register_features(READER)
    store.set_value("taste", "r1", [0.1, 0.9])
    vector = store.get_vector("r1", ["pages_read", "genre", "taste", "subscribed"])
    assert vector.to_list() == [0, "unknown", [0.1, 0.9], None]
    assert vector.get("genre") == "unknown" and not vector.found("genre")
    assert vector.found("taste")
    stranger = store.get_vector("nobody", ["reader.pages_read", "genre"])
    assert stranger.to_dict() == {"pages_read": 0, "genre": "unknown"}


def test_delete_value_and_list_features(online_store_of: Callable[..., FeatureStore]) -> None:
    store = online_store_of(online_history_size=5)
    store.register_features(READER)
    store.set_value("pages_read", "r1", 3)
    store.set_value("genre", "r1", "travel")
    assert store.delete_value("pages_read", "r1") is True
    assert store.delete_value("pages_read", "r1") is False
    assert store.get_value("pages_read", "r1") is None
    assert store.get_value_history("pages_read", "r1") == []
    assert store.get_vector("r1", ["pages_read", "genre"]).to_list() == [0, "travel"]
    # after a delete the versions start again
    store.set_value("pages_read", "r1", 4)
    assert store.get_value("pages_read", "r1").version == 1  # type: ignore[union-attr]
    names = [f.name for f in store.list_features()]
    assert names == ["pages_read", "genre", "taste", "subscribed", "last_seen", "prefs"]


def test_batch_ingestion_skips_records_without_an_entity_id(
    online_store_of: Callable[..., FeatureStore],
) -> None:
    store = online_store_of(online_history_size=2)
    service = FeatureService(store)
    service.register_group(READER)
    result = service.ingest_batch(
        [
            {"reader_id": "r1", "pages_read": 12, "genre": "poetry"},
            {"pages_read": 99},  # no id: skipped, and reported
            {"reader_id": "r2", "pages_read": 3},
        ],
        entity_id_field="reader_id",
    )
    assert int(result) == 2 and result.skipped == 1
    assert "entity key" in result.skipped_reasons[0]
    assert store.get_vector("r1", ["pages_read", "genre"]).to_list() == [12, "poetry"]


def test_transforms_return_new_vectors(online_store_of: Callable[..., FeatureStore]) -> None:
    store = online_store_of()
    store.register_features(READER)
    store.set_value("pages_read", "r1", 250)
    store.set_value("genre", "r1", "Poetry")
    transform = FeatureTransform().add("pages_read", lambda v: v / 100).add("genre", str.lower)
    vector = store.get_vector("r1", ["pages_read", "genre"])
    changed = transform.apply(vector)
    assert changed.to_list() == [2.5, "poetry"]
    assert vector.to_list() == [250, "Poetry"]  # the input is unchanged


def test_concurrent_writers_each_get_their_own_version(
    online_store_of: Callable[..., FeatureStore],
) -> None:
    store = online_store_of(online_history_size=100)
    store.register_features(READER)
    store.set_value("pages_read", "r1", 0, event_time=datetime(2024, 1, 1))

    def write(worker: int) -> None:
        for step in range(10):
            moment = datetime(2024, 1, 2) + timedelta(seconds=worker * 10 + step)
            store.set_value("pages_read", "r1", worker * 10 + step, event_time=moment)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = [v.version for v in store.get_value_history("pages_read", "r1")]
    # every accepted write got a distinct version, numbered without gaps
    assert versions == list(range(len(versions), 0, -1))
    assert store.get_value("pages_read", "r1").value == 39  # type: ignore[union-attr]
