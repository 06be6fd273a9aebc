"""A local Spark driver's threads yield the processor to online reads (Linux)."""

from __future__ import annotations

import contextlib
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


# A driver that starts a process which starts another, as the JVM starts PySpark's daemon and
# the daemon forks its Python workers.
WORKERS = (
    "import subprocess, sys, time\n"
    'inner = \'import subprocess, sys, time; subprocess.Popen([sys.executable, "-c", '
    '"import time; time.sleep(60)"]); time.sleep(60)\'\n'
    "subprocess.Popen([sys.executable, '-c', inner])\n"
    "print('ready', flush=True)\ntime.sleep(60)\n"
)


def _descendants(pid: int) -> list[int]:
    found, waiting = [], [pid]
    while waiting:
        parent = waiting.pop()
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    stat = Path(f"/proc/{name}/stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
                    found.append(int(name))
                    waiting.append(int(name))
    return found


def test_the_processes_the_driver_started_get_the_offline_priority_too() -> None:
    driver = subprocess.Popen([sys.executable, "-c", WORKERS], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while len(_descendants(driver.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _descendants(driver.pid)
        assert len(workers) == 2, "the driver's child and grandchild are up"
        assert all(max(_nices(pid)) < 6 for pid in workers)
        session = SimpleNamespace(
            sparkContext=SimpleNamespace(_gateway=SimpleNamespace(proc=driver))
        )
        threads = len(_nices(driver.pid)) + sum(len(_nices(pid)) for pid in workers)
        assert lower_offline_priority(session, 6, idle=True) == 2 * threads  # nice and class
        for pid in [driver.pid, *workers]:
            assert set(_nices(pid)) == {6}
            assert {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")} == {
                os.SCHED_IDLE
            }
    finally:
        for pid in _descendants(driver.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        driver.kill()
        driver.wait(timeout=10)


def test_offline_nice_is_checked() -> None:
    assert ServerSettings().offline_nice == 10
    assert ServerSettings().offline_idle is True
    with pytest.raises(ConfigurationError, match="offline_idle"):
        ServerSettings(offline_idle="yes")  # type: ignore[arg-type]
    for bad in (-1, 20, 1.5):
        with pytest.raises(ConfigurationError):
            ServerSettings(offline_nice=bad)  # type: ignore[arg-type]
