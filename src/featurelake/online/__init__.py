"""Online stores: low-latency latest values (in-process or Redis), synced from Gold tables.

`RedisOnlineStore` is imported only when used, so `featurelake.online` works without `redis`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurelake.online.base import (
    ColumnBatch,
    GroupPlan,
    OnlinePlan,
    OnlineRecord,
    OnlineStore,
    OnlineWriteResult,
    ReadRequest,
    SchemaResolver,
    StoredRow,
    WriteRequest,
)
from featurelake.online.factory import BACKENDS, create_online_store, store_namespace
from featurelake.online.memory import InMemoryOnlineStore
from featurelake.online.sync import (
    SYNC_KIND,
    SyncResult,
    last_sync,
    push_latest_arrow,
    sync_to_online,
)
from featurelake.online.vector import FeatureValue, FeatureVector, vectors_to_pandas

if TYPE_CHECKING:
    from featurelake.online.redis_store import RedisOnlineStore

__all__ = [
    "BACKENDS",
    "SYNC_KIND",
    "ColumnBatch",
    "FeatureValue",
    "FeatureVector",
    "GroupPlan",
    "InMemoryOnlineStore",
    "OnlinePlan",
    "OnlineRecord",
    "OnlineStore",
    "OnlineWriteResult",
    "ReadRequest",
    "RedisOnlineStore",
    "SchemaResolver",
    "StoredRow",
    "SyncResult",
    "WriteRequest",
    "create_online_store",
    "last_sync",
    "push_latest_arrow",
    "store_namespace",
    "sync_to_online",
    "vectors_to_pandas",
]


def __getattr__(name: str) -> Any:
    if name == "RedisOnlineStore":
        try:
            from featurelake.online.redis_store import RedisOnlineStore
        except ImportError as error:
            if getattr(error, "name", "") and str(error.name).startswith("redis"):
                from featurelake.errors import DependencyNotInstalledError

                raise DependencyNotInstalledError(
                    "redis", "redis", "The Redis online store"
                ) from None
            raise
        return RedisOnlineStore
    raise AttributeError(f"module 'featurelake.online' has no attribute {name!r}")
