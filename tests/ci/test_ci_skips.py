"""Under CI=true a skipped Redis, Chromium or cluster test fails the run (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CASES = Path(__file__).with_name("skip_cases.py")


def run_cases(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-rfs", str(CASES)],
        env=env, capture_output=True, text=True, timeout=120, cwd=CASES.parents[2],
    )  # fmt: skip


def test_under_ci_a_skipped_service_test_fails_the_run() -> None:
    result = run_cases("true")
    assert result.returncode == 1, result.stdout
    assert "2 failed, 1 passed, 1 skipped" in result.stdout
    assert "FAILED tests/ci/skip_cases.py::test_needs_redis" in result.stdout
    assert "FAILED tests/ci/skip_cases.py::test_needs_chromium" in result.stdout
    assert "skipped under CI=true, where it must run: redis-server is not installed" in (
        result.stdout
    )
    assert "without ANSI mode" in result.stdout  # other skips stay skips


def test_outside_ci_they_are_skips() -> None:
    result = run_cases(None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped" in result.stdout
