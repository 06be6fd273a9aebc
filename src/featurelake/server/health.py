"""What `GET /v1/health` checks: registry, storage, online store, Spark, audit queue."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurelake.errors import first_line

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from featurelake.server.state import ServerState


def health_checks(state: ServerState) -> dict[str, dict[str, Any]]:
    """One entry per part; `healthy: False` on a part the server needs."""
    store = state.store
    checks: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        groups = store.registry.list_groups()
        checks["registry"] = {
            "healthy": True,
            "engine": store.registry.engine,
            "groups": len(groups),
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    except Exception as error:
        checks["registry"] = {"healthy": False, "error": first_line(error)}
    root = store.config.storage_path
    if "://" not in root or root.startswith("file:"):
        path = Path(root.removeprefix("file://").removeprefix("file:"))
        checks["store"] = {"healthy": path.is_dir(), "path": str(path)}
    else:
        checks["store"] = {"healthy": checks["registry"]["healthy"], "path": root}
    if store.config.storage is not None:  # where and how, never a credential
        checks["store"]["storage"] = store.config.storage.to_dict()
    if store.config.enable_online_store:
        checks["online"] = store.online.health_check()
    else:
        checks["online"] = {"healthy": True, "enabled": False}
    if state.mirror is not None:
        checks["online_from_gold"] = state.mirror.status()
    checks["spark"] = _spark(store.spark_session)
    checks["audit"] = {"healthy": True, "queued_dropped": state.audit.dropped}
    return checks


def _spark(session: SparkSession | None) -> dict[str, Any]:
    """Spark is started on demand: not running is healthy; a running session must answer."""
    if session is None:
        return {"healthy": True, "started": False}
    try:
        return {"healthy": True, "started": True, "version": session.version}
    except Exception as error:
        return {"healthy": False, "started": True, "error": first_line(error)}
