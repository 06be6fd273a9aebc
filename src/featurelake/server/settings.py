"""`ServerSettings`: limits of the HTTP feature server (the store keeps its own config)."""

from __future__ import annotations

from dataclasses import dataclass

from featurelake.errors import ConfigurationError


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server process.

    Request bodies larger than `max_body_bytes` get 413 before they are parsed (the lists in a
    body have fixed caps, see `models.py`). API keys are re-read from the
    registry every `key_cache_seconds`, so a key revoked from the CLI stops working within that
    time. Audit events are committed to their Delta table every `audit_flush_seconds` (and when
    the server stops).
    """

    max_body_bytes: int = 1024 * 1024
    key_cache_seconds: float = 2.0
    audit_flush_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise ConfigurationError(
                f"The server setting max_body_bytes is {self.max_body_bytes!r}.",
                fix="set max_body_bytes to a whole number of bytes, at least 1.",
                key="max_body_bytes",
            )
        for name in ("key_cache_seconds", "audit_flush_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(
                    f"The server setting {name} is {value!r}.",
                    fix=f"set {name} to a number of seconds, 0 or more.",
                    key=name,
                )
