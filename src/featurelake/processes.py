"""Processes the tests and benchmarks start on loopback (Connect server, S3 server, cluster)."""

from __future__ import annotations

import os
import signal
import subprocess


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
