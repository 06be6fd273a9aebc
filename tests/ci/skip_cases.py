"""Cases for test_ci_skips.py, run by it in a pytest process of their own (not collected)."""

import pytest


def test_needs_redis() -> None:
    pytest.skip("redis-server is not installed (apt-get install -y redis-server)")


def test_needs_chromium() -> None:
    pytest.skip("Chromium is not installed")


def test_skips_for_another_reason() -> None:
    pytest.skip("without ANSI mode, unreadable strings are nulls")


def test_runs() -> None:
    assert True
