"""One suite for every online store: what the in-memory and the Redis store must both do."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from featurelake.errors import FeatureGroupNotFoundError, FeatureNotFoundError
from featurelake.online import FeatureVector, InMemoryOnlineStore, OnlineStore, vectors_to_pandas
from featurelake.schema import FeatureGroupSchema

T0 = datetime(2024, 1, 1, 12, 0, 0)


def all_types_row(entity: Any, **overrides: Any) -> dict[str, Any]:
    row = {
        "entity_id": entity,
        "event_timestamp": T0,
        "an_int": -(2**31),
        "a_bigint": 2**62 + 7,
        "a_float": 1.5,
        "a_double": 0.1 + 0.2,
        "a_decimal": Decimal("123456789.125"),
        "a_string": "héllo | wörld: ✓",
        "a_bool": False,
        "a_timestamp": datetime(2023, 5, 6, 7, 8, 9, 123456),
        "a_date": date(1999, 12, 31),
        "an_array": [1.0, -0.0, None, 2.5e-300],
        "a_string_array": ["a", "", None],
        "a_map": {"k": 2**40, "none": None},
        "a_struct": {"x": 3, "label": "three"},
    }
    row.update(overrides)
    return row


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (floats compared bit for bit, NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- values ---------------------------------------------------------------------------------------


def test_every_type_round_trips_exactly(
    online_store: OnlineStore, all_types_schema: FeatureGroupSchema
) -> None:
    rows = [
        all_types_row(1),
        all_types_row(
            2,
            a_double=float("nan"),
            a_float=float("-inf"),
            an_array=[float("inf"), float("nan")],
            a_string="",
            a_bool=True,
            a_timestamp=datetime(2030, 1, 1, tzinfo=UTC),
            a_bigint=-(2**63),
        ),
        all_types_row(3, **{f["name"]: None for f in all_types_schema.to_dict()["features"]}),
    ]
    result = online_store.write_batch(all_types_schema, rows)
    assert (result.written, result.skipped, result.rejected) == (3, 0, 0)

    vectors = online_store.get(["all_types.*"], [1, 2, 3])
    for row, vector in zip(rows, vectors, strict=True):
        for name in all_types_schema.feature_names:
            assert same(vector.get(name), row[name]), (name, vector.get(name), row[name])
    assert vectors[2].to_list() == [None] * len(all_types_schema.features)
    assert all(vectors[2].found(n) for n in all_types_schema.feature_names)


def test_numpy_and_pandas_values_are_stored_as_python_values(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    frame = pd.DataFrame(
        {
            "user_id": np.array([1, 2], dtype="int64"),
            "event_timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 10:00"]),
            "clicks": pd.array([5, None], dtype="Int64"),
            "score": np.array([0.25, np.nan]),
            "segment": ["a", None],
        }
    )
    assert online_store.write_batch(small_schema, frame).written == 2
    first, second = online_store.get("user_stats.*", [1, 2])
    assert first.to_dict() == {"clicks": 5, "score": 0.25, "segment": "a"}
    assert type(first.get("clicks")) is int
    assert second.to_dict() == {"clicks": None, "score": None, "segment": None}
    assert second.event_time("clicks") == datetime(2024, 1, 2, 10)


def test_values_come_with_event_time_and_age(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    event = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    online_store.write_batch(
        small_schema,
        [{"user_id": 7, "event_timestamp": event, "clicks": 3, "score": 1.0, "segment": "x"}],
    )
    (vector,) = online_store.get(["user_stats.clicks", "user_stats.score"], [7])
    value = vector.feature("clicks")
    assert value.found and value.value == 3 and value.event_time == event
    assert value.age is not None
    assert timedelta(minutes=5) <= value.age < timedelta(minutes=6)
    assert vector.age("score") == vector.feature("score").age or vector.age("score") is not None


def test_reading_returned_arrays_cannot_change_the_store(
    online_store: OnlineStore, all_types_schema: FeatureGroupSchema
) -> None:
    online_store.write_batch(all_types_schema, [all_types_row(1)])
    (vector,) = online_store.get("all_types.an_array", [1])
    vector.get("an_array").append(99.0)
    vector.to_list()[0].append(98.0)
    (again,) = online_store.get("all_types.an_array", [1])
    assert len(again.get("an_array")) == 4


# -- event-time compare-and-set -------------------------------------------------------------------


def row(user: Any, at: datetime, clicks: int, **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "event_timestamp": at, "clicks": clicks, **extra}


def test_older_events_never_overwrite_newer_ones(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    online_store.write_batch(small_schema, [row(1, T0, 10), row(2, T0, 20)])
    result = online_store.write_batch(
        small_schema,
        [row(1, T0 - timedelta(seconds=1), 11), row(2, T0 + timedelta(microseconds=1), 21)],
    )
    assert (result.written, result.rejected) == (1, 1)
    one, two = online_store.get("user_stats.clicks", [1, 2])
    assert one.get("clicks") == 10 and one.event_time("clicks") == T0
    assert two.get("clicks") == 21


def test_equal_event_times_are_decided_by_ingestion_time(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    late = T0 + timedelta(hours=1)
    online_store.write_batch(small_schema, [row(1, T0, 1, _ingested_at=late)])
    earlier = online_store.write_batch(small_schema, [row(1, T0, 2, _ingested_at=T0)])
    assert earlier.rejected == 1
    same_again = online_store.write_batch(small_schema, [row(1, T0, 3, _ingested_at=late)])
    assert same_again.written == 1  # a replay of the same event is accepted (idempotent)
    later = online_store.write_batch(
        small_schema, [row(1, T0, 4, _ingested_at=late + timedelta(seconds=1))]
    )
    assert later.written == 1
    assert online_store.get("user_stats.clicks", [1])[0].get("clicks") == 4


def test_force_overwrites_newer_values(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    online_store.write_batch(small_schema, [row(1, T0, 10)])
    result = online_store.write_batch(small_schema, [row(1, T0 - timedelta(days=1), 5)], force=True)
    assert result.written == 1
    (vector,) = online_store.get("user_stats.clicks", [1])
    assert vector.get("clicks") == 5 and vector.event_time("clicks") == T0 - timedelta(days=1)


def test_features_absent_from_a_row_keep_their_value(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    online_store.write_batch(small_schema, [row(1, T0, 10, score=0.5, segment="a")])
    online_store.write_batch(small_schema, [row(1, T0 + timedelta(1), 11, segment=None)])
    (vector,) = online_store.get("user_stats.*", [1])
    assert vector.to_dict() == {"clicks": 11, "score": 0.5, "segment": None}


def test_concurrent_writers_leave_the_newest_event(
    store_factory: Callable[..., OnlineStore], small_schema: FeatureGroupSchema
) -> None:
    store = store_factory()
    events = list(range(400))
    random.Random(3).shuffle(events)
    chunks = [events[i::4] for i in range(4)]

    def writer(chunk: list[int]) -> None:
        for start in range(0, len(chunk), 10):
            store.write_batch(
                small_schema,
                [
                    row(u, T0 + timedelta(seconds=e), e)
                    for e in chunk[start : start + 10]
                    for u in (1, 2)
                ],
            )

    threads = [threading.Thread(target=writer, args=(c,)) for c in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for vector in store.get("user_stats.clicks", [1, 2]):
        assert vector.get("clicks") == 399
        assert vector.event_time("clicks") == T0 + timedelta(seconds=399)


# -- missing values, defaults, ttl ----------------------------------------------------------------


def test_missing_entities_get_defaults(
    store_factory: Callable[..., OnlineStore], small_schema: FeatureGroupSchema
) -> None:
    store = store_factory(defaults={"segment": "unknown"})
    store.write_batch(small_schema, [row(1, T0, 10, segment=None), row(2, T0, 20)])
    known, unwritten, unknown = store.get(
        ["user_stats.clicks", "user_stats.segment"],
        [1, 2, 404],
        defaults={"user_stats.clicks": 0},
    )
    assert known.to_dict() == {"clicks": 10, "segment": None}  # stored null is not replaced
    # a feature never written for a known entity has no value: it takes the default
    assert unwritten.to_dict() == {"clicks": 20, "segment": "unknown"}
    assert not unwritten.found("segment") and unwritten.found("clicks")
    assert unknown.to_dict() == {"clicks": 0, "segment": "unknown"}
    value = unknown.feature("clicks")
    assert not value.found and value.event_time is None and value.age is None
    assert unknown.entity == {"user_id": 404}


def test_values_expire_after_the_group_ttl(store_factory: Callable[..., OnlineStore]) -> None:
    store = store_factory()
    schema = FeatureGroupSchema("fast", ["id"], [{"name": "v", "type": "int"}], ttl="1s")
    forever = FeatureGroupSchema("slow", ["id"], [{"name": "v", "type": "int"}])
    now = datetime.now(UTC).replace(tzinfo=None)
    store.write_batch(schema, [{"id": 1, "event_timestamp": now, "v": 1}])
    store.write_batch(forever, [{"id": 1, "event_timestamp": now, "v": 2}])
    assert store.get(["fast.v", "slow.v"], [1])[0].to_list() == [1, 2]
    time.sleep(1.3)
    (vector,) = store.get(["fast.v", "slow.v"], [1])
    assert vector.to_list() == [None, 2]
    assert not vector.found("v") if "v" in vector else not vector.found("fast.v")
    # An expired value no longer blocks older events.
    again = store.write_batch(schema, [{"id": 1, "event_timestamp": now - timedelta(1), "v": 3}])
    assert again.written == 1


# -- entities, groups, names ----------------------------------------------------------------------


def test_entities_with_several_keys(online_store: OnlineStore) -> None:
    schema = FeatureGroupSchema("store_item", ["store", "item"], [{"name": "stock", "type": "int"}])
    online_store.write_batch(
        schema,
        [
            {"store": "a|b", "item": 1, "event_timestamp": T0, "stock": 1},
            {"store": "a", "item": "b|1", "event_timestamp": T0, "stock": 2},
        ],
    )
    by_dict, by_tuple, numpy_key = online_store.get(
        "store_item.stock",
        [{"store": "a|b", "item": 1}, ("a", "b|1"), {"store": "a|b", "item": np.int64(1)}],
    )
    assert (by_dict.get("stock"), by_tuple.get("stock"), numpy_key.get("stock")) == (1, 2, 1)
    assert by_tuple.entity == {"store": "a", "item": "b|1"}
    with pytest.raises(Exception, match="keys"):
        online_store.get("store_item.stock", [5])


def test_several_groups_in_one_request_with_clashing_names(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    other = FeatureGroupSchema(
        "user_profile",
        ["user_id"],
        [{"name": "score", "type": "double"}, {"name": "age", "type": "int"}],
    )
    online_store.write_batch(small_schema, [row(1, T0, 10, score=0.5)])
    online_store.write_batch(
        other, [{"user_id": 1, "event_timestamp": T0, "score": 9.0, "age": 30}]
    )
    (vector,) = online_store.get(["user_stats.score", "user_profile.*", "user_stats.clicks"], [1])
    assert vector.names == ("user_stats__score", "user_profile__score", "age", "clicks")
    assert vector.to_list() == [0.5, 9.0, 30, 10]
    assert vector.get("user_profile.score") == 9.0
    assert vector.get("user_stats@1.score") == 0.5
    with pytest.raises(FeatureNotFoundError):
        vector.get("score")


def test_unknown_groups_and_features_are_named(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    online_store.register_schema(small_schema)
    with pytest.raises(FeatureGroupNotFoundError, match="nope"):
        online_store.get("nope.x", [1])
    with pytest.raises(FeatureNotFoundError, match="clicks, score, segment"):
        online_store.get("user_stats.nope", [1])


def test_versions_are_separate(online_store: OnlineStore, small_schema: FeatureGroupSchema) -> None:
    v2 = small_schema.with_changes(version=2)
    online_store.write_batch(small_schema, [row(1, T0, 1)])
    online_store.write_batch(v2, [row(1, T0, 2)])
    assert online_store.get("user_stats@1.clicks", [1])[0].get("clicks") == 1
    assert online_store.get("user_stats.clicks", [1])[0].get("clicks") == 2  # latest version


# -- writes that are skipped ----------------------------------------------------------------------


def test_rows_without_keys_time_or_with_wrong_types_are_skipped_and_reported(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    result = online_store.write_batch(
        small_schema,
        [
            row(1, T0, 1),
            {"event_timestamp": T0, "clicks": 2},
            {"user_id": None, "event_timestamp": T0},
            {"user_id": 3, "clicks": 3},
            row(4, T0, "four"),  # type: ignore[arg-type]
            row(5, "not a time", 5),  # type: ignore[arg-type]
            row(6, T0, 6, colour="red"),
        ],
    )
    assert (result.received, result.written, result.skipped) == (7, 2, 5)
    assert "entity key" in result.skipped_reasons[0]
    assert "event time" in result.skipped_reasons[2]
    assert "'clicks' = 'four'" in result.skipped_reasons[3]
    assert result.ignored_columns == ["colour"]


# -- deletes, health ------------------------------------------------------------------------------


def test_delete_entities_or_a_whole_group(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    online_store.write_batch(small_schema, [row(u, T0, u) for u in range(1, 6)])
    assert online_store.delete(small_schema, [1, 2, 99]) == 2
    values = [v.get("clicks") for v in online_store.get("user_stats.clicks", range(1, 6))]
    assert values == [None, None, 3, 4, 5]
    assert online_store.delete("user_stats") == 3
    assert [v.get("clicks") for v in online_store.get("user_stats.clicks", [3])] == [None]


def test_health_check_and_stats(
    online_store: OnlineStore, small_schema: FeatureGroupSchema
) -> None:
    online_store.write_batch(small_schema, [row(1, T0, 1)])
    online_store.get("user_stats.clicks", [1, 2])
    health = online_store.health_check()
    assert health["healthy"] is True and health["backend"] == online_store.backend
    stats = online_store.stats()
    assert stats["rows_written"] == 1 and stats["entities_read"] == 2 and stats["errors"] == 0


# -- vectors --------------------------------------------------------------------------------------


def test_feature_vector_forms(online_store: OnlineStore, small_schema: FeatureGroupSchema) -> None:
    online_store.write_batch(small_schema, [row(1, T0, 10, score=0.5, segment="a")])
    vectors = online_store.get(["user_stats.segment", "user_stats.clicks"], [1, 2])
    first = vectors[0]
    assert isinstance(first, FeatureVector)
    assert first.to_list() == ["a", 10]
    assert first.to_dict(include_entity=True) == {"user_id": 1, "segment": "a", "clicks": 10}
    assert list(first) == ["segment", "clicks"] and len(first) == 2 and "clicks" in first
    changed = first.with_values({"clicks": 11})
    assert changed.get("clicks") == 11 and first.get("clicks") == 10
    assert changed.event_time("clicks") == T0
    frame = vectors_to_pandas(vectors, event_times=True)
    assert list(frame.columns) == [
        "user_id",
        "segment",
        "clicks",
        "segment__event_time",
        "clicks__event_time",
    ]
    assert frame["user_id"].tolist() == [1, 2]
    assert frame["clicks"].tolist()[0] == 10 and pd.isna(frame["clicks"].tolist()[1])


def test_expired_read_plans_are_rebuilt_off_the_read_path(small_schema: FeatureGroupSchema) -> None:
    resolved: list[str] = []

    def slow_registry(name: str, version: int | None) -> FeatureGroupSchema:
        resolved.append(name)
        time.sleep(0.3)
        return small_schema

    store = InMemoryOnlineStore(resolver=slow_registry, plan_cache_seconds=0.05)
    store.get("user_stats.clicks", [1])  # the first plan is built on the read
    time.sleep(0.1)
    started = time.monotonic()
    store.get("user_stats.clicks", [1])  # expired: served from the old plan
    assert time.monotonic() - started < 0.2
    deadline = time.monotonic() + 5
    while len(resolved) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert resolved == ["user_stats", "user_stats"]
