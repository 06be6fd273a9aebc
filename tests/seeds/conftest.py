"""Fixtures of the seed tests: a store with an online part, in memory or on a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig, OnlineBackend


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def online_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def online_store_of(
    online_kind: str, store_config: FeatureStoreConfig, request: pytest.FixtureRequest
) -> Iterator[Callable[..., FeatureStore]]:
    """Makes FeatureStores with the online store of this test's kind enabled."""
    made: list[FeatureStore] = []

    def make(**changes: Any) -> FeatureStore:
        online: dict[str, Any] = {"online_backend": OnlineBackend.MEMORY}
        if online_kind == "redis":
            server = request.getfixturevalue("redis_server")
            online = {"online_backend": OnlineBackend.REDIS, "online_url": server.url}
        store = FeatureStore(store_config.replace(enable_online_store=True, **online, **changes))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
