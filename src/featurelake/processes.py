"""Processes the tests and benchmarks start on loopback (Connect server, S3 server, cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


def start_logged(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    """Run `command` in a process group of its own (so it is stopped with its children), its
    output and errors going to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=stdin,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def wait_until(
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.25,
) -> bool:
    """Poll `ready` every `interval_s`: True once it is, False when `alive` turns false or
    `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        if ready():
            return True
        time.sleep(interval_s)
    return False


def log_tail(log_path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file (for error messages)."""
    if not log_path.exists():
        return "(no log)"
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop `process` by its id, with its whole process group (SIGTERM, then SIGKILL after
    `timeout_s`); idempotent."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


class StoppedOnExit:
    """A context manager that calls the object's `stop()` when the block ends."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class LoggedProcess(StoppedOnExit):
    """A child process (`process`) writing to `log_path`; stopped when its block ends."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log (for error messages)."""
        return log_tail(self.log_path, lines)
