"""Catalog sign-in sessions: an API key given once, kept on the server for the browser session.

The browser holds only a random session id in an HttpOnly, SameSite=Strict cookie without an
expiry (gone when the browser closes); the key itself never travels back and never appears in
a URL. Each request verifies the key again, so a revoked key stops working at once. Sessions
live in the server's memory, idle ones expire, and their number is bounded.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "featurelake_ui"
IDLE_SECONDS = 8 * 3600.0
MAX_SESSIONS = 10_000


@dataclass
class _Session:
    token: str
    seen: float


class UiSessions:
    """Session id -> API key, in memory, oldest dropped past `max_sessions`."""

    def __init__(
        self, *, idle_seconds: float = IDLE_SECONDS, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, token: str) -> str:
        """A new session for an (already verified) API key: its id."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session_id] = _Session(token, time.monotonic())
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session_id

    def token(self, session_id: str | None) -> str | None:
        """The API key of a live session, or None (unknown or idle too long)."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds:
                del self._sessions[session_id]
                return None
            session.seen = now
            self._sessions.move_to_end(session_id)
            return session.token

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)
