"""CPU priority of offline work: a local Spark driver yields the processor to online reads.

With a local master, the server's Spark driver is a JVM on the server's own machine: while
historical requests run, its task threads keep the cores busy and every online read waits for
a time slice. On Linux the server lowers the scheduling priority (`nice`) of that JVM's
threads to `offline_nice`, so the kernel runs a waiting online read first; the JVM still takes
whatever processor time serving leaves. Only the JVM's threads are changed, never a Python
thread of the server (a low-priority thread holding the interpreter lock would make online
reads wait for it). Elsewhere (other systems, Spark Connect, a driver not started by this
process) nothing is changed.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Any

_done: dict[int, set[int]] = {}  # JVM pid -> its threads already lowered


def lower_offline_priority(session: Any, nice: int) -> int:
    """Lower the priority of the local Spark driver JVM's threads to `nice` (at least);
    the number of threads changed (0 when there is nothing to do)."""
    if nice <= 0 or session is None or not hasattr(os, "setpriority"):
        return 0
    pid = _jvm_pid(session)
    if pid is None:
        return 0
    tasks = Path(f"/proc/{pid}/task")
    try:
        threads = [int(name) for name in os.listdir(tasks)]
    except (OSError, ValueError):
        return 0
    done = _done.setdefault(pid, set())
    changed = 0
    for thread in threads:
        if thread in done:  # threads started later inherit their parent thread's priority
            continue
        with suppress(OSError):  # a thread that ended meanwhile
            if os.getpriority(os.PRIO_PROCESS, thread) < nice:
                os.setpriority(os.PRIO_PROCESS, thread, nice)
                changed += 1
        done.add(thread)
    return changed


def _jvm_pid(session: Any) -> int | None:
    """The pid of the JVM this process launched for `session`, if it launched one."""
    try:
        process = session.sparkContext._gateway.proc
    except Exception:  # Spark Connect, or a gateway this process did not start
        return None
    pid = getattr(process, "pid", None)
    return pid if isinstance(pid, int) and process.poll() is None else None
