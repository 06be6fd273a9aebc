"""Fixtures of the online tests: both stores behind one parametrized fixture."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from featurelake.online import InMemoryOnlineStore, OnlineStore
from featurelake.schema import FeatureGroupSchema

ALL_TYPES = [
    {"name": "an_int", "type": "int"},
    {"name": "a_bigint", "type": "bigint"},
    {"name": "a_float", "type": "float"},
    {"name": "a_double", "type": "double"},
    {"name": "a_decimal", "type": "decimal(12,3)"},
    {"name": "a_string", "type": "string"},
    {"name": "a_bool", "type": "boolean"},
    {"name": "a_timestamp", "type": "timestamp"},
    {"name": "a_date", "type": "date"},
    {"name": "an_array", "type": "array<double>"},
    {"name": "a_string_array", "type": "array<string>"},
    {"name": "a_map", "type": "map<string,bigint>"},
    {"name": "a_struct", "type": "struct<x:int,label:string>"},
]


@pytest.fixture
def all_types_schema() -> FeatureGroupSchema:
    return FeatureGroupSchema("all_types", ["entity_id"], ALL_TYPES)


@pytest.fixture
def small_schema() -> FeatureGroupSchema:
    return FeatureGroupSchema(
        "user_stats",
        ["user_id"],
        [
            {"name": "clicks", "type": "bigint"},
            {"name": "score", "type": "double"},
            {"name": "segment", "type": "string"},
        ],
    )


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(
    store_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OnlineStore]]:
    """Makes empty stores of this test's kind (each Redis store in its own key namespace)."""
    made: list[OnlineStore] = []

    def make(**kwargs: Any) -> OnlineStore:
        store: OnlineStore
        if store_kind == "memory":
            store = InMemoryOnlineStore(**kwargs)
        else:
            from featurelake.online import RedisOnlineStore

            url = request.getfixturevalue("redis_server").url
            kwargs.setdefault("namespace", f"test:{uuid.uuid4().hex[:8]}")
            store = RedisOnlineStore(url, timeout_ms=2_000, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def online_store(store_factory: Callable[..., OnlineStore]) -> OnlineStore:
    """Each online store in turn, empty."""
    return store_factory()
