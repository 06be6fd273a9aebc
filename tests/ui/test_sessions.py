"""Catalog sign-in sessions and the sign-in redirect target (no browser needed)."""

from __future__ import annotations

import time

from featurelake.server.ui.routes import _safe_next
from featurelake.server.ui.sessions import UiSessions


def test_a_session_holds_its_key_until_closed_idle_or_pushed_out() -> None:
    sessions = UiSessions(idle_seconds=0.2, max_sessions=2)
    first = sessions.open("flk_a")
    assert sessions.token(first) == "flk_a"
    assert sessions.token("made-up") is None and sessions.token(None) is None
    sessions.close(first)
    assert sessions.token(first) is None

    idle = sessions.open("flk_b")
    time.sleep(0.3)
    assert sessions.token(idle) is None  # idle too long

    oldest, middle, newest = (sessions.open(f"flk_{n}") for n in range(3))
    assert sessions.token(oldest) is None  # past max_sessions: the oldest goes
    assert sessions.token(middle) == "flk_1" and sessions.token(newest) == "flk_2"
    assert len({oldest, middle, newest}) == 3 and all(len(s) >= 40 for s in (oldest, newest))


def test_sign_in_returns_only_to_catalog_pages() -> None:
    assert _safe_next("/ui/groups/profile") == "/ui/groups/profile"
    for target in (
        "https://evil.example/ui",
        "//evil.example/ui",
        "/ui//evil",
        "/v1/features",
        "/ui/sign-out",
        "/ui\\..\\x",
    ):
        assert _safe_next(target) == "/ui", target
