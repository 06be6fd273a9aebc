"""A Spark standalone cluster on loopback: one master and small workers, as child processes.

`local[N]` runs the driver and the executors in one JVM; a standalone cluster runs each
executor in its own JVM (with its own Python workers), as a real cluster does. This starts one
from the pyspark wheel (`spark-class org.apache.spark.deploy.master.Master` and
`...deploy.worker.Worker`) for tests, benchmarks and local development, and stops every process
it started by its id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

from loguru import logger

from featurelake.connect_server import LOOPBACK, _pyspark_home, free_loopback_port
from featurelake.errors import ConfigurationError
from featurelake.processes import (
    LoggedProcess,
    StoppedOnExit,
    start_logged,
    stop_process_group,
    wait_until,
)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# The master and worker daemons only schedule: a small heap and a cheap JIT are plenty.
DAEMON_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@dataclass
class ClusterProcess(LoggedProcess):
    """One daemon of the cluster (the master or a worker) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the daemon by its process id (its process group: a worker's executors too)."""
        stop_process_group(self.process, timeout_s)


class LocalStandaloneCluster(StoppedOnExit):
    """A running standalone master and its workers; use as a context manager or `stop()`."""

    def __init__(self, master: ClusterProcess, port: int, ui_port: int, log_dir: Path) -> None:
        self.master = master
        self.port = port
        self.ui_port = ui_port
        self.log_dir = log_dir
        self.workers: list[ClusterProcess] = []

    @property
    def url(self) -> str:
        """The `spark://` address to give `spark_master` or `spark-submit --master`."""
        return f"spark://{LOOPBACK}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The master's web UI (its state as JSON under `/json/`)."""
        return f"http://{LOOPBACK}:{self.ui_port}"

    @property
    def pids(self) -> list[int]:
        return [self.master.pid, *(worker.pid for worker in self.workers)]

    @classmethod
    def start(
        cls,
        *,
        log_dir: str | Path,
        workers: int = 2,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        timeout_s: float = 180.0,
    ) -> LocalStandaloneCluster:
        """Start a master and `workers` workers of `worker_cores` cores and `worker_memory`
        each on free loopback ports; wait until every worker has registered.

        Logs, the workers' folders and `pids` (each process started) go to `log_dir`. When the
        cluster does not come up, what was started is stopped and a ConfigurationError says why.
        """
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        port, ui_port = free_loopback_port(), free_loopback_port()
        logger.info("starting a Spark standalone master on {}:{}", LOOPBACK, port)
        master = _launch(
            "master",
            [MASTER_CLASS, "--host", LOOPBACK, "--port", str(port), "--webui-port", str(ui_port)],
            log_dir,
        )
        cluster = cls(master, port, ui_port, log_dir)
        try:
            cluster._wait_until(lambda state: state is not None, timeout_s, "the master")
            for index in range(workers):
                work_dir = log_dir / f"worker-{index}"
                work_dir.mkdir(exist_ok=True)
                command = [
                    WORKER_CLASS,
                    "--host", LOOPBACK,
                    "--port", str(free_loopback_port()),
                    "--webui-port", str(free_loopback_port()),
                    "--cores", str(worker_cores),
                    "--memory", worker_memory,
                    "--work-dir", str(work_dir),
                    cluster.url,
                ]  # fmt: skip
                cluster.workers.append(_launch(f"worker-{index}", command, log_dir))
            cluster._wait_until(
                lambda state: state is not None and int(state.get("aliveworkers", 0)) >= workers,
                timeout_s,
                f"{workers} worker(s)",
            )
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def state(self) -> dict[str, Any] | None:
        """The master's state (workers, applications), or None while it is not up."""
        try:
            with urlopen(f"{self.ui_url}/json/", timeout=2) as response:
                loaded = json.load(response)
        except (URLError, OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def _wait_until(
        self, ready: Callable[[dict[str, Any] | None], bool], timeout_s: float, what: str
    ) -> None:
        processes = (self.master, *self.workers)
        if wait_until(
            lambda: ready(self.state()), lambda: all(p.running() for p in processes), timeout_s
        ):
            return
        tails = "\n".join(f"{p.name}: {p.log_tail(8)}" for p in (self.master, *self.workers))
        raise ConfigurationError(
            f"the Spark standalone cluster did not start ({what} not up):\n{tails}",
            fix=f"read the logs in {self.log_dir}; check that Java 17 is installed",
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the workers (and their executors), then the master, each by its id;
        idempotent."""
        for process in [*reversed(self.workers), self.master]:
            process.stop(timeout_s)


def _launch(name: str, arguments: list[str], log_dir: Path) -> ClusterProcess:
    """Run `spark-class ARGUMENTS` in a process group of its own, output to a log file."""
    home = _pyspark_home()
    env = dict(os.environ)
    env.pop("SPARK_REMOTE", None)
    env["SPARK_HOME"] = str(home)
    env.setdefault("SPARK_DAEMON_MEMORY", "256m")
    env.setdefault("SPARK_DAEMON_JAVA_OPTS", DAEMON_JAVA_OPTIONS)
    # Executors start Python workers with the driver's PYSPARK_PYTHON; this is the fallback.
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    log_path = log_dir / f"{name}.log"
    process = start_logged([str(home / "bin" / "spark-class"), *arguments], log_path, env=env)
    with (log_dir / "pids").open("a") as pids:  # what was started, to check or clean up
        pids.write(f"{process.pid} {name}\n")
    return ClusterProcess(name, process, log_path)
