"""Online stores chosen by name from the config, each backend imported only when used.

`create_online_store(config)` looks `online_backend` up in `BACKENDS`; a dotted path
(`package.module.ClassName`) names a custom `OnlineStore` subclass. Adding a backend is a new
module plus one entry here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.errors import ConfigurationError, DependencyNotInstalledError
from featurelake.online.base import OnlineStore, SchemaResolver
from featurelake.plugins import load_subclass

if TYPE_CHECKING:
    from featurelake.registry import Registry


def _memory(config: FeatureStoreConfig, resolver: SchemaResolver | None) -> OnlineStore:
    from featurelake.online.memory import InMemoryOnlineStore

    return InMemoryOnlineStore(
        resolver=resolver,
        plan_cache_seconds=config.metadata_cache_ttl_seconds,
        history_size=config.online_history_size,
    )


def _redis(config: FeatureStoreConfig, resolver: SchemaResolver | None) -> OnlineStore:
    try:
        import redis  # noqa: F401
    except ImportError:
        raise DependencyNotInstalledError("redis", "redis", "The Redis online store") from None
    from featurelake.online.redis_store import RedisOnlineStore

    if not config.online_url:
        raise ConfigurationError(
            "The online backend is 'redis' but 'online_url' is not set.",
            fix="set online_url to the server, e.g. 'redis://localhost:6379/0'.",
            key="online_url",
        )
    return RedisOnlineStore(
        config.online_url,
        timeout_ms=config.online_timeout_ms,
        namespace=store_namespace(config),
        resolver=resolver,
        plan_cache_seconds=config.metadata_cache_ttl_seconds,
        history_size=config.online_history_size,
    )


BACKENDS: dict[str, Callable[[FeatureStoreConfig, SchemaResolver | None], OnlineStore]] = {
    OnlineBackend.MEMORY.value: _memory,
    OnlineBackend.REDIS.value: _redis,
}


def store_namespace(config: FeatureStoreConfig) -> str:
    """Redis key prefix of a store: stores sharing one Redis server never see each other's keys."""
    digest = hashlib.sha1(config.storage_path.rstrip("/").encode()).hexdigest()[:8]
    return f"fl:{digest}"


def create_online_store(
    config: FeatureStoreConfig,
    registry: Registry | None = None,
    *,
    backend: str | None = None,
) -> OnlineStore:
    """The online store named by `backend` (default: `config.online_backend`).

    With a `registry`, feature references are resolved against registered groups.
    """
    name = str(backend or config.online_backend.value)
    resolver = registry.get_group if registry is not None else None
    loader = BACKENDS.get(name.lower())
    if loader is not None:
        return loader(config, resolver)
    if "." in name:
        return _custom(name, config, resolver)
    raise ConfigurationError(
        f"Unknown online backend '{name}'.",
        fix=f"set online_backend to one of {', '.join(BACKENDS)}, or to the dotted path of an "
        "OnlineStore subclass.",
        key="online_backend",
    )


def _custom(path: str, config: FeatureStoreConfig, resolver: SchemaResolver | None) -> OnlineStore:
    cls = load_subclass(path, OnlineStore, what="online backend", key="online_backend")
    from_config = getattr(cls, "from_config", None)
    if from_config is not None:
        return from_config(config, resolver)
    return cls(resolver=resolver)
