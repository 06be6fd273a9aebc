"""CPU priority of offline work: a local Spark driver yields the processor to online reads.

With a local master, the server's Spark driver is a JVM on the server's own machine: while
historical requests run, its task threads keep the cores busy and every online read waits for
a time slice. On Linux the server lowers the scheduling priority (`nice`) of that JVM's
threads, and of the processes it started (PySpark's Python workers), to `offline_nice`, and
with `offline_idle` (the default) puts them in the idle scheduling class (`SCHED_IDLE`): a
waking online read then takes the processor from them at once, where a lower `nice` alone
still lets a running JVM thread finish its time slice first (measured: serve p50 under load
25 ms with `nice` 10, 15 ms idle class, against 12 ms without load). The JVM still takes
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


def lower_offline_priority(session: Any, nice: int, idle: bool = False) -> int:
    """Lower the priority of the local Spark driver JVM's threads (and of its processes) to
    `nice` (at least), and with `idle` put them in the idle scheduling class; the number of
    changes made (0 when there is nothing to do)."""
    if (nice <= 0 and not idle) or session is None or not hasattr(os, "setpriority"):
        return 0
    pid = _jvm_pid(session)
    if pid is None:
        return 0
    changed = _lower_threads(pid, nice, idle, _done.setdefault(pid, set()))
    if changed:
        # Processes the JVM started before its threads were lowered (Python workers); those it
        # starts later inherit the priority, so /proc is walked only when a thread was changed.
        # Their threads are few and checked each time (process ids recycle).
        changed += sum(_lower_threads(c, nice, idle, set()) for c in _descendants(pid))
    return changed


def _lower_threads(pid: int, nice: int, idle: bool, done: set[int]) -> int:
    """Lower every thread of process `pid` not in `done` to `nice` (and to the idle class);
    the number of changes made."""
    try:
        threads = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return 0
    changed = 0
    for thread in threads:
        if thread in done:  # threads started later inherit their parent thread's priority
            continue
        with suppress(OSError):  # a thread that ended meanwhile
            if nice > 0 and os.getpriority(os.PRIO_PROCESS, thread) < nice:
                os.setpriority(os.PRIO_PROCESS, thread, nice)
                changed += 1
            if idle and os.sched_getscheduler(thread) != os.SCHED_IDLE:
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
                changed += 1
        done.add(thread)
    return changed


def _descendants(pid: int) -> list[int]:
    """The processes started by `pid`, and theirs (from /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(name))
    found: list[int] = []
    waiting = list(children.get(pid, []))
    while waiting:
        child = waiting.pop()
        found.append(child)
        waiting.extend(children.get(child, []))
    return found


def _jvm_pid(session: Any) -> int | None:
    """The pid of the JVM this process launched for `session`, if it launched one."""
    try:
        process = session.sparkContext._gateway.proc
    except Exception:  # Spark Connect, or a gateway this process did not start
        return None
    pid = getattr(process, "pid", None)
    return pid if isinstance(pid, int) and process.poll() is None else None
