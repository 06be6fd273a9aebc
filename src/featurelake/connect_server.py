"""A local Spark Connect server with Delta Lake, as a child process.

Databricks serverless compute, shared clusters and Spark 4 clients reach Spark through Spark
Connect. This starts the same kind of server on this machine (the pyspark wheel ships the
`spark-connect` jar) so that featurelake's code paths can be exercised over Connect by tests,
benchmarks and local development. The server is stopped by its process id.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from featurelake.config import FeatureStoreConfig
from featurelake.errors import ConfigurationError
from featurelake.processes import LoggedProcess, start_logged, stop_process_group, wait_until
from featurelake.session import spark_jars
from featurelake.storage import credential_environment

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
LOOPBACK = "127.0.0.1"


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _connect_jar(home: Path) -> Path:
    jars = sorted((home / "jars").glob("spark-connect_*.jar"))
    if not jars:
        raise ConfigurationError(
            f"There is no spark-connect jar in {home / 'jars'}.",
            fix="install the full pyspark wheel (pip install 'featurelake[connect]'), not "
            "pyspark-client.",
        )
    return jars[0]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def server_command(config: FeatureStoreConfig, port: int, ui_port: int | None = None) -> list[str]:
    """The spark-submit command line of a Delta-enabled Connect server on `port`.

    With `ui_port`, the server's Spark UI (and its REST API) listens on that loopback port.
    """
    home = _pyspark_home()
    command = [
        str(home / "bin" / "spark-submit"),
        "--class",
        SERVER_CLASS,
        "--master",
        config.spark_master,
        "--name",
        f"{config.spark_app_name}-connect",
    ]
    jars, packages = spark_jars(config)
    if jars:
        command += ["--jars", ",".join(jars)]
    if packages:
        command += ["--packages", ",".join(packages)]
    conf = {
        "spark.connect.grpc.binding.address": LOOPBACK,
        "spark.connect.grpc.binding.port": str(port),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(config.spark_shuffle_partitions),
        "spark.ui.enabled": str(ui_port is not None).lower(),
        **config.public_spark_conf,  # credentials go in the environment
    }
    if ui_port is not None:
        conf["spark.ui.port"] = str(ui_port)
        conf["spark.driver.host"] = LOOPBACK
    if config.spark_warehouse_dir:
        conf["spark.sql.warehouse.dir"] = config.spark_warehouse_dir
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command.append(str(_connect_jar(home)))
    return command


@dataclass(eq=False)
class LocalConnectServer(LoggedProcess):
    """A running local Spark Connect server; use as a context manager or call `stop()`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ui_port: int | None = None

    @property
    def url(self) -> str:
        """The `sc://` address to give `spark_remote` or `SPARK_REMOTE`."""
        return f"sc://{LOOPBACK}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The server's Spark UI (REST API under `/api/v1`), when it was started with one."""
        return None if self.ui_port is None else f"http://{LOOPBACK}:{self.ui_port}"

    @classmethod
    def start(
        cls,
        config: FeatureStoreConfig,
        *,
        log_dir: str | Path,
        port: int | None = None,
        timeout_s: float = 180.0,
    ) -> LocalConnectServer:
        """Start a server with the config's master, Delta jars and Spark confs; wait until up.

        The Spark UI is on (on a free loopback port) when the config's `spark_ui_enabled` is.
        """
        port = port or free_loopback_port()
        ui_port = free_loopback_port() if config.spark_ui_enabled else None
        log_path = Path(log_dir) / f"spark-connect-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("SPARK_REMOTE", None)
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        if config.storage is not None:
            env.update(credential_environment(config.storage))  # never on the command line
        logger.info("starting a Spark Connect server on {}:{}", LOOPBACK, port)
        process = start_logged(server_command(config, port, ui_port), log_path, env=env)
        server = cls(process, port, log_path, ui_port)
        server._wait_until_listening(timeout_s)
        return server

    def _wait_until_listening(self, timeout_s: float) -> None:
        if wait_until(lambda: _port_open(self.port), self.running, timeout_s):
            return
        tail = self.log_tail()
        self.stop()
        raise ConfigurationError(
            f"the Spark Connect server did not start on port {self.port}: {tail}",
            fix=f"read {self.log_path}; check that Java 17 is installed and the Delta jars "
            "are in .jars (make setup)",
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server by its process id (its whole process group); idempotent."""
        stop_process_group(self.process, timeout_s)
