"""The audit log: an append-only Delta table of every write and every denied request.

Each event says who (key id, name, role, client address), what (method, path, action,
resource), when (UTC) and the result (HTTP status, stable code, detail). Requests only queue
their event; a background thread commits the queue to `{storage_path}/_server/audit` with
delta-rs every `audit_flush_seconds` (and at shutdown), so auditing adds no Delta commit to a
request's latency. A failed commit keeps the events queued and is retried on the next tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from loguru import logger

from featurelake.config import FeatureStoreConfig
from featurelake.errors import ConfigurationError
from featurelake.registry.locations import store_root
from featurelake.storage import is_delta_table, open_table, write_table

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string()),
        pa.field("key_id", pa.string()),
        pa.field("key_name", pa.string()),
        pa.field("role", pa.string()),
        pa.field("client", pa.string()),
        pa.field("method", pa.string()),
        pa.field("path", pa.string()),
        pa.field("action", pa.string()),
        pa.field("resource", pa.string()),
        pa.field("result", pa.string()),
        pa.field("status", pa.int32()),
        pa.field("code", pa.string()),
        pa.field("detail", pa.string()),
    ]
)
MAX_QUEUED = 100_000
MAX_DETAIL = 2_000


def server_table_path(config: FeatureStoreConfig, name: str) -> str:
    """Where a table owned by the server lives: `{storage_path}/_server/{name}` (delta-rs)."""
    root = store_root(config)
    if root.startswith("dbfs:"):
        raise ConfigurationError(
            f"The feature server keeps its tables with delta-rs, which cannot open {root}.",
            fix="point storage_path at a local, mounted (/dbfs/...) or object-store path.",
            key="storage_path",
        )
    return f"{root}/_server/{name}"


@dataclass(frozen=True)
class AuditEvent:
    """One audited request."""

    action: str
    result: str  # ok | denied | rejected | failed
    status: int
    method: str = ""
    path: str = ""
    resource: str = ""
    code: str | None = None
    detail: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    role: str | None = None
    client: str | None = None
    request_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        if out["detail"] is not None and len(out["detail"]) > MAX_DETAIL:
            out["detail"] = out["detail"][:MAX_DETAIL] + "..."
        return out


class AuditLog:
    """Queue audit events and commit them to a Delta table in the background."""

    def __init__(self, path: str, *, flush_seconds: float = 1.0) -> None:
        self.path = path
        self.flush_seconds = flush_seconds
        self._queue: list[AuditEvent] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.pending: Callable[[bool], list[AuditEvent]] | None = None
        """Events made at flush time (summaries of throttled rows); `True` at shutdown."""

    @classmethod
    def for_store(cls, config: FeatureStoreConfig, *, flush_seconds: float = 1.0) -> AuditLog:
        return cls(server_table_path(config, "audit"), flush_seconds=flush_seconds)

    def record(self, event: AuditEvent) -> None:
        """Queue one event (committed within `flush_seconds`)."""
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:  # storage down for long: keep the newest
                self._queue.pop(0)
                self.dropped += 1
            self._queue.append(event)

    def flush(self, *, final: bool = False) -> int:
        """Commit the queued events now; returns how many were committed."""
        if self.pending is not None:
            for event in self.pending(final):
                self.record(event)
        with self._flush_lock:
            with self._lock:
                events, self._queue = self._queue, []
            if not events:
                return 0
            try:
                table = pa.Table.from_pylist([e.row() for e in events], schema=AUDIT_SCHEMA)
                write_table(self.path, table, mode="append")
            except Exception:
                with self._lock:
                    self._queue[:0] = events
                raise
            return len(events)

    def start(self) -> None:
        """Start the background committer (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="featurelake-audit", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the committer and commit what is queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.flush(final=True)
        except Exception as error:
            logger.error("the last audit events could not be committed to {}: {}", self.path, error)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as error:
                logger.warning(
                    "committing audit events to {} failed ({}); will retry", self.path, error
                )

    def read(self, *, limit: int | None = None, **equals: Any) -> list[dict[str, Any]]:
        """Committed events, newest first, optionally filtered (`action="write"`, ...)."""
        self.flush()
        if not is_delta_table(self.path):
            return []
        filters = [(k, "=", v) for k, v in equals.items()] or None
        rows = pa.table(open_table(self.path).to_pyarrow_table(filters=filters)).to_pylist()
        rows.sort(key=lambda r: r["at"], reverse=True)
        return rows[:limit] if limit is not None else rows


class UnauthenticatedThrottle:
    """Audit rows of unauthenticated requests (401), limited per client address.

    The first `rows` 401s of a client in each `window_seconds` are audited one by one; the
    rest are counted, and one summary row per client and window says how many were not (so a
    flood of bad keys cannot grow the audit table faster than `rows` per window per client).
    """

    MAX_CLIENTS = 10_000

    def __init__(self, rows: int, window_seconds: float) -> None:
        self.rows = rows
        self.window = window_seconds
        self._windows: dict[str, tuple[float, int, int]] = {}  # start, audited, suppressed
        self._lock = threading.Lock()

    def admit(self, client: str | None, now: float) -> bool:
        """True when this 401 gets its own audit row."""
        name = client or "unknown"
        with self._lock:
            if name not in self._windows and len(self._windows) >= self.MAX_CLIENTS:
                name = "other"
            start, audited, suppressed = self._windows.get(name, (now, 0, 0))
            if now - start >= self.window and not suppressed:
                start, audited = now, 0
            if audited < self.rows:
                self._windows[name] = (start, audited + 1, suppressed)
                return True
            self._windows[name] = (start, audited, suppressed + 1)
            return False

    def summaries(self, now: float, *, final: bool = False) -> list[AuditEvent]:
        """One event per client whose window ended with requests not audited one by one."""
        events = []
        with self._lock:
            for name, (start, _, suppressed) in list(self._windows.items()):
                if not final and now - start < self.window:
                    continue
                del self._windows[name]
                if suppressed:
                    events.append(
                        AuditEvent(
                            action="request",
                            result="denied",
                            status=401,
                            resource=name,
                            code="unauthenticated_summary",
                            detail=f"{suppressed} more unauthenticated request(s) from {name} "
                            f"within {self.window:g} s were not audited one by one.",
                            client=name,
                        )
                    )
        return events


def describe_resource(value: Mapping[str, Any] | str | None) -> str:
    """A short text for the `resource` column."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:MAX_DETAIL]
    return ", ".join(f"{k}={v}" for k, v in value.items())[:MAX_DETAIL]
