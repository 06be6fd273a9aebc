"""`ServerSettings`: limits of the HTTP feature server (the store keeps its own config)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from featurelake.errors import ConfigurationError

SECONDS = (
    "key_cache_seconds",
    "audit_flush_seconds",
    "max_future_seconds",
    "offline_timeout_seconds",
    "retry_after_seconds",
    "unauthenticated_audit_window_seconds",
    "online_refresh_seconds",
)
COUNTS = (
    "max_body_bytes",
    "serve_threads",
    "offline_threads",
    "offline_queue",
    "max_concurrent_per_key",
    "max_historical_cells",
    "historical_page_cells",
    "unauthenticated_audit_rows",
    "offline_nice",
)
ZERO_ALLOWED = ("offline_queue", "unauthenticated_audit_rows", "offline_nice")


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server process (each a `featurelake serve` option of the same name).

    - `max_body_bytes`: larger request bodies get 413 before they are parsed (the lists in a
      body have fixed caps, see `models.py`).
    - `key_cache_seconds`: API keys are re-read from the registry this often, so a key revoked
      from the CLI stops working within that time.
    - `audit_flush_seconds`: audit events are committed to their Delta table this often (and
      when the server stops).
    - `max_future_seconds`: a written event time may be at most this far past the server's
      clock (422 `event_time_in_future` beyond it).
    - `serve_threads`: threads reserved for `POST /v1/features/serve` (online reads), apart
      from the pool the other routes share and from offline work.
    - `offline_threads` / `offline_queue`: historical requests running at once / waiting for a
      thread; a request finding both full gets 503 `server_busy` with `Retry-After`.
    - `offline_timeout_seconds`: a historical request answers 504 `offline_timeout` (with
      `Retry-After`) after this long; its Spark jobs are cancelled.
    - `offline_nice`: on Linux, the scheduling priority (`nice`, 1 to 19; 0 leaves it) given
      to the threads of a local Spark driver JVM the server's store started (a session given
      to the store keeps its priority), so online reads get the processor first while
      historical requests run (see `priority.py`).
    - `offline_idle`: on Linux, those threads (and the driver's Python workers) also run in
      the idle scheduling class, so a waking online read preempts them at once.
    - `max_concurrent_per_key`: requests one API key may have in flight (429
      `too_many_requests` with `Retry-After` beyond it).
    - `max_historical_cells`: the largest historical answer, estimated before running as
      entities x windows x features x aggregations (422 `historical_too_large` above it).
    - `historical_page_cells`: the most values one historical page holds; a larger answer
      comes in pages of consecutive entities (`next_page_token`), each read on its own.
    - `unauthenticated_audit_rows` per `unauthenticated_audit_window_seconds`: 401s audited
      one row each, per client address; the rest of the window is counted in one summary row.
    - `retry_after_seconds`: the `Retry-After` given with 429, 503 and 504.
    - `online_refresh_seconds`: with an in-process (memory) online store, how often serve
      requests check the Gold tables for writes by other processes (see `gold_mirror.py`).
    """

    max_body_bytes: int = 1024 * 1024
    key_cache_seconds: float = 2.0
    audit_flush_seconds: float = 1.0
    max_future_seconds: float = 300.0
    serve_threads: int = 16
    offline_threads: int = 4
    offline_queue: int = 16
    offline_timeout_seconds: float = 120.0
    offline_nice: int = 10
    offline_idle: bool = True
    max_concurrent_per_key: int = 32
    max_historical_cells: int = 5_000_000
    historical_page_cells: int = 1_000_000
    unauthenticated_audit_rows: int = 20
    unauthenticated_audit_window_seconds: float = 60.0
    retry_after_seconds: float = 5.0
    online_refresh_seconds: float = 2.0

    def __post_init__(self) -> None:
        for name in COUNTS:
            value = getattr(self, name)
            low = 0 if name in ZERO_ALLOWED else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigurationError(
                    f"The server setting {name} is {value!r}.",
                    fix=f"set {name} to a whole number, at least {low}.",
                    key=name,
                )
        if self.offline_nice > 19:
            raise ConfigurationError(
                f"The server setting offline_nice is {self.offline_nice!r}.",
                fix="set offline_nice to a whole number from 0 (unchanged) to 19.",
                key="offline_nice",
            )
        if not isinstance(self.offline_idle, bool):
            raise ConfigurationError(
                f"The server setting offline_idle is {self.offline_idle!r}.",
                fix="set offline_idle to true or false.",
                key="offline_idle",
            )
        for name in SECONDS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(
                    f"The server setting {name} is {value!r}.",
                    fix=f"set {name} to a number of seconds, 0 or more.",
                    key=name,
                )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every setting's name."""
        return tuple(f.name for f in fields(cls))
