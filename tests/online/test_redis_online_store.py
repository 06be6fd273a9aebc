"""What only the Redis store does: its key layout, expiry, scripts, timeouts and failures."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.errors import (
    ConfigurationError,
    DependencyNotInstalledError,
    OnlineStoreError,
    OnlineStoreUnavailableError,
)
from featurelake.online import (
    InMemoryOnlineStore,
    RedisOnlineStore,
    create_online_store,
    store_namespace,
)
from featurelake.schema import FeatureGroupSchema

pytestmark = pytest.mark.redis

T0 = datetime(2024, 1, 1)
SCHEMA = FeatureGroupSchema(
    "user_stats",
    ["user_id"],
    [{"name": "clicks", "type": "bigint"}, {"name": "score", "type": "double"}],
    ttl="1h",
)


@pytest.fixture
def redis_store(redis_server: Any) -> Iterator[RedisOnlineStore]:
    store = RedisOnlineStore(redis_server.url, namespace=f"t{uuid.uuid4().hex[:8]}")
    yield store
    store.close()


def test_one_hash_per_group_version_and_entity(redis_store: RedisOnlineStore) -> None:
    redis_store.write_batch(SCHEMA, [{"user_id": 42, "event_timestamp": T0, "clicks": 3}])
    key = redis_store.key(SCHEMA, "42")
    assert key == f"{redis_store.namespace}:user_stats@1:42"
    fields = redis_store.client.hgetall(key)
    assert set(fields) == {b"@ts", b"@ing", b"clicks"}
    assert int(fields[b"@ts"]) == 1704067200000000
    assert 0 < redis_store.client.pttl(key) <= 3_600_000


def test_removing_the_ttl_makes_rewritten_keys_permanent(redis_store: RedisOnlineStore) -> None:
    redis_store.write_batch(SCHEMA, [{"user_id": 1, "event_timestamp": T0, "clicks": 1}])
    no_ttl = FeatureGroupSchema.from_dict({**SCHEMA.to_dict(), "ttl": None})
    redis_store.write_batch(no_ttl, [{"user_id": 1, "event_timestamp": T0, "clicks": 2}])
    assert redis_store.client.pttl(redis_store.key(SCHEMA, "1")) == -1


def test_writes_survive_a_script_flush(redis_store: RedisOnlineStore) -> None:
    redis_store.write_batch(SCHEMA, [{"user_id": 1, "event_timestamp": T0, "clicks": 1}])
    redis_store.client.script_flush()
    later = T0 + timedelta(seconds=1)
    result = redis_store.write_batch(
        SCHEMA, [{"user_id": 1, "event_timestamp": later, "clicks": 2}]
    )
    assert result.written == 1
    assert redis_store.get("user_stats.clicks", [1])[0].get("clicks") == 2


def test_large_batches_are_chunked_and_counted(redis_store: RedisOnlineStore) -> None:
    rows = [{"user_id": i, "event_timestamp": T0, "clicks": i} for i in range(1_234)]
    assert redis_store.write_batch(SCHEMA, rows).written == 1_234
    older = [{**r, "event_timestamp": T0 - timedelta(1)} for r in rows[:600]]
    assert redis_store.write_batch(SCHEMA, older).rejected == 600
    values = [v.get("clicks") for v in redis_store.get("user_stats.clicks", range(1_234))]
    assert values == list(range(1_234))
    assert redis_store.delete("user_stats") == 1_234


def test_namespaces_keep_stores_apart(redis_server: Any) -> None:
    one = RedisOnlineStore(redis_server.url, namespace="one")
    two = RedisOnlineStore(redis_server.url, namespace="two")
    try:
        one.write_batch(SCHEMA, [{"user_id": 1, "event_timestamp": T0, "clicks": 1}])
        two.register_schema(SCHEMA)
        assert two.get("user_stats.clicks", [1])[0].get("clicks") is None
        assert one.target != two.target
    finally:
        one.delete(SCHEMA)
        one.close()
        two.close()


def test_target_hides_the_password() -> None:
    store = RedisOnlineStore("redis://user:secret@localhost:6390/2", namespace="ns")
    assert store.target == "redis://localhost:6390/2#ns"
    store.close()


# -- the server going away ------------------------------------------------------------------------


@pytest.fixture
def doomed_server(redis_server_factory: Callable[[], Any]) -> Any:
    """A redis-server of its own, for a test that kills or freezes it."""
    return redis_server_factory()


def test_killed_server_gives_a_typed_error_within_the_timeout(doomed_server: Any) -> None:
    store = RedisOnlineStore(doomed_server.url, timeout_ms=300, namespace="doomed")
    store.write_batch(SCHEMA, [{"user_id": 1, "event_timestamp": T0, "clicks": 1}])
    assert store.get("user_stats.clicks", [1])[0].get("clicks") == 1

    doomed_server.stop()
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailableError, match="did not answer") as caught:
        store.get("user_stats.clicks", [1])
    assert time.monotonic() - started < 1.0
    assert caught.value.transient and "online_timeout_ms" in str(caught.value)
    with pytest.raises(OnlineStoreUnavailableError):
        store.write_batch(SCHEMA, [{"user_id": 1, "event_timestamp": T0, "clicks": 2}])
    health = store.health_check()
    assert health["healthy"] is False and "error" in health
    assert store.stats()["errors"] == 2
    store.close()


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGSTOP")
def test_frozen_server_times_out_instead_of_hanging(doomed_server: Any) -> None:
    store = RedisOnlineStore(doomed_server.url, timeout_ms=300, namespace="frozen")
    store.register_schema(SCHEMA)
    store.get("user_stats.clicks", [1])  # a pooled connection exists before the freeze
    os.kill(doomed_server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailableError, match=r"[Tt]imeout"):
            store.get("user_stats.clicks", list(range(100)))
        elapsed = time.monotonic() - started
        assert 0.25 < elapsed < 1.5
    finally:
        os.kill(doomed_server.process.pid, signal.SIGCONT)
    # The timed-out connection was dropped, so the next read works again.
    assert store.get("user_stats.clicks", [1])[0].get("clicks") is None
    store.close()


# -- the factory ----------------------------------------------------------------------------------


def test_factory_builds_stores_by_name(redis_server: Any, tmp_path: Any) -> None:
    memory = create_online_store(FeatureStoreConfig(storage_path=str(tmp_path)))
    assert isinstance(memory, InMemoryOnlineStore)
    config = FeatureStoreConfig(
        storage_path=str(tmp_path), online_backend=OnlineBackend.REDIS, online_url=redis_server.url
    )
    redis_store = create_online_store(config)
    assert isinstance(redis_store, RedisOnlineStore)
    assert (
        redis_store.namespace
        == store_namespace(config)
        != store_namespace(config.replace(storage_path=str(tmp_path / "other")))
    )
    assert redis_store.timeout_ms == config.online_timeout_ms == 500
    redis_store.close()
    custom = create_online_store(config, backend="featurelake.online.InMemoryOnlineStore")
    assert isinstance(custom, InMemoryOnlineStore)
    with pytest.raises(ConfigurationError, match="Unknown online backend"):
        create_online_store(config, backend="cassandra")
    with pytest.raises(ConfigurationError, match="not an OnlineStore"):
        create_online_store(config, backend="featurelake.config.FeatureStoreConfig")


def test_missing_redis_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    config = FeatureStoreConfig(
        storage_path=str(tmp_path),
        online_backend=OnlineBackend.REDIS,
        online_url="redis://localhost:1/0",
    )
    with pytest.raises(DependencyNotInstalledError, match=r"featurelake\[redis\]"):
        create_online_store(config)


def test_other_redis_errors_are_terminal_online_store_errors(redis_store: RedisOnlineStore) -> None:
    redis_store.register_schema(SCHEMA)
    redis_store.client.set(redis_store.key(SCHEMA, "1"), "not a hash")
    with pytest.raises(OnlineStoreError, match="failed while reading") as caught:
        redis_store.get("user_stats.clicks", [1])
    assert not caught.value.transient
    assert "WRONGTYPE" in str(caught.value)
