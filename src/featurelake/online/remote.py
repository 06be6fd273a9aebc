"""What Spark's executors run to write a sync's rows into an online store.

`push_partition` is the Python function of a `mapInArrow` over a latest-rows frame: it opens
the store from its `RemoteStore` settings (once per worker process), writes the partition's
Arrow batches with the store's compare-and-set and returns one row of counts. Imports stay
light: a worker loads this module, the store's and pyarrow, nothing of Spark's driver side.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from featurelake.errors import OnlineStoreUnavailableError
from featurelake.online.base import OnlineStore, RemoteStore
from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    import pyarrow as pa

PUSH_SCHEMA = "written long, rejected long, seconds double"
PROBE_SCHEMA = "ok boolean"
_OPEN: dict[Any, OnlineStore] = {}


def open_store(remote: RemoteStore) -> OnlineStore:
    """The store of `remote`, opened once per process."""
    store = _OPEN.get(remote)
    if store is None:
        store = _OPEN[remote] = remote.open()
    return store


def push_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    remote: RemoteStore,
    schema: FeatureGroupSchema,
    force: bool,
) -> Iterator[pa.RecordBatch]:
    """Write one partition of latest rows; yields (written, rejected, seconds)."""
    import pyarrow as pa

    store = open_store(remote)
    started = time.perf_counter()
    written, rejected = store.write_arrow(schema, batches, force=force)
    yield pa.RecordBatch.from_pydict(
        {"written": [written], "rejected": [rejected], "seconds": [time.perf_counter() - started]}
    )


def probe_partition(
    batches: Iterator[pa.RecordBatch], *, remote: RemoteStore
) -> Iterator[pa.RecordBatch]:
    """Check that this worker reaches the store; yields one row."""
    import pyarrow as pa

    for _ in batches:
        pass
    health = open_store(remote).health_check()
    if not health["healthy"]:
        raise OnlineStoreUnavailableError(
            f"The online store at {health['target']} did not answer a Spark executor: "
            f"{health.get('error')}",
            fix="let the executors reach the online store (online_url).",
            target=health["target"],
        )
    yield pa.RecordBatch.from_pydict({"ok": [True]})
