"""The README's first command ends in the demo script: it runs to the end on a fresh store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_demo_runs_to_the_end(tmp_path: Path) -> None:
    store = tmp_path / "demo_store"
    env = {
        **os.environ,
        "FEATURELAKE_DEMO_STORE": str(store),
        "PYTHONPATH": str(REPO / "src"),
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # short-lived JVMs
    }
    done = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for shown in (
        "rows merged into transaction_aggregates",
        "manifest kept as 'demo_churn'",
        "synced customer_profile v1",
        "single-entity lookups",
        "Done in",
    ):
        assert shown in output, output[-4000:]
    assert (store / "_sources" / "txn_latest" / "_delta_log").is_dir()
