"""A local Spark driver's threads yield the processor to online reads (Linux)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from featurelake.errors import ConfigurationError
from featurelake.server import ServerSettings
from featurelake.server.priority import lower_offline_priority

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux only")

THREADS = "import threading, time\n" + (
    "[threading.Thread(target=time.sleep, args=(60,), daemon=True).start() for _ in range(3)]\n"
    "print('ready', flush=True)\ntime.sleep(60)\n"
)


def _nices(pid: int) -> list[int]:
    return [os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")]


def test_every_thread_of_the_driver_process_gets_the_offline_priority() -> None:
    # A process with four threads, launched the way pyspark launches its driver (a child
    # process known to the gateway as `proc`).
    child = subprocess.Popen([sys.executable, "-c", THREADS], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        session = SimpleNamespace(
            sparkContext=SimpleNamespace(_gateway=SimpleNamespace(proc=child))
        )
        before = _nices(child.pid)
        assert len(before) == 4 and max(before) < 7
        assert lower_offline_priority(session, 0) == 0  # 0 leaves it
        assert lower_offline_priority(session, 7) == 4
        assert _nices(child.pid) == [7, 7, 7, 7]
        assert lower_offline_priority(session, 7) == 0  # once per thread
    finally:
        child.kill()
        child.wait(timeout=10)
    deadline = time.monotonic() + 5
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lower_offline_priority(session, 7) == 0  # an ended driver: nothing to do
    # A session without a local gateway (Spark Connect) is left alone.
    assert lower_offline_priority(SimpleNamespace(), 7) == 0
    assert lower_offline_priority(None, 7) == 0


def test_offline_nice_is_checked() -> None:
    assert ServerSettings().offline_nice == 10
    for bad in (-1, 20, 1.5):
        with pytest.raises(ConfigurationError):
            ServerSettings(offline_nice=bad)  # type: ignore[arg-type]
