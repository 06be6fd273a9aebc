"""Shared fixtures: one Spark session for the whole suite, a clean environment per test."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.connect_server import LocalConnectServer
from featurelake.s3_server import LocalS3Server, find_weed
from featurelake.session import get_spark
from featurelake.standalone_cluster import LocalStandaloneCluster


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's FEATURELAKE_* or SPARK_REMOTE settings."""
    for key in list(os.environ):
        if key.startswith("FEATURELAKE_") and key != "FEATURELAKE_JARS_DIR":
            monkeypatch.delenv(key)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)


# -- Under CI nothing that needs a service skips ------------------------------------------------

# A skip whose reason names one of these is a missing service or browser: on a machine set up
# by `make setup` / `.ci/run` it cannot happen, so under CI=true it fails the run instead.
CI_REQUIRED = ("redis", "chromium", "chrome", "browser", "playwright", "cluster")


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true, a skipped Redis, Chromium or cluster test is a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and _under_ci()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if any(word in reason.lower() for word in CI_REQUIRED):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} skipped under CI=true, where it must run: {reason} "
            "(make setup installs what the tests need)"
        )


# -- Spark: classic, Spark Connect, a standalone cluster, or classic with stores on S3 ---------

SPARK_MODES = ("classic", "connect", "cluster", "s3")
SPARK_MODE_ENV = "FEATURELAKE_TEST_SPARK_MODE"
# The suites that must pass unchanged over Spark Connect (Databricks serverless, shared clusters).
CONNECT_SUITES = ("offline", "quality", "registry", "serving", "pipeline")
# The suites that must pass unchanged on a standalone cluster (executors in JVMs of their own):
# the ones whose work runs on executors (offline reads, writes and windows, quality, scheduling
# with incremental runs and streaming, pipeline nodes) and the jobs, spark-submitted to it.
CLUSTER_SUITES = ("offline", "quality", "scheduling", "pipeline", "jobs", "cluster")
# The suites whose stores live on s3:// in s3 mode (a SeaweedFS server on loopback), and the
# storage suite, whose server tests run only in that mode.
S3_SUITES = (
    "offline/test_materialized.py",
    "offline/test_training.py",
    "offline/test_duckdb.py",
    "registry/test_registry.py",
    "online/test_online_sync.py",
    "server/test_staging_historical.py",
    "server/test_s3_health.py",
    "scheduling/test_streaming.py",
    "storage",
)
S3_BUCKET = "featurelake"
# Single files of other suites that must pass over Connect too.
CONNECT_FILES = ("cli/test_progress_spark.py",)
# Suites about one mode's own machinery, run in that mode only.
MODE_ONLY_SUITES = {"cluster": "cluster"}
SPARK_FIXTURES = {"spark", "spark_cluster"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--spark-mode",
        choices=SPARK_MODES,
        default=os.environ.get(SPARK_MODE_ENV, "classic"),
        help="run the Spark tests on a classic local session, over a local Spark Connect "
        "server (only the suites in CONNECT_SUITES and CONNECT_FILES), on a local standalone "
        "cluster (only the suites in CLUSTER_SUITES), or with the stores of the S3_SUITES on "
        "s3:// (s3 mode, a local SeaweedFS server)",
    )


def _spark_mode(config: pytest.Config) -> str:
    return str(config.getoption("--spark-mode"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"spark mode: {_spark_mode(config)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep what the run's mode runs; one process, one mode. Connect: the Spark tests of the
    Connect suites (and CONNECT_FILES). Cluster: the Spark tests of the cluster suites. s3: the
    store tests of the S3 suites. A mode's own suite (tests/cluster) and the tests on the S3
    server run in that mode only."""
    mode = _spark_mode(config)
    root = Path(__file__).parent
    kept, dropped = [], []
    for item in items:
        relative = Path(item.path).relative_to(root)
        suite = relative.parts[0]
        fixtures = set(getattr(item, "fixturenames", ()))
        if MODE_ONLY_SUITES.get(suite, mode) != mode:
            keep = False
        elif mode == "connect":
            connect = suite in CONNECT_SUITES or relative.as_posix() in CONNECT_FILES
            keep = connect and "spark" in fixtures
        elif mode == "cluster":
            keep = suite in CLUSTER_SUITES and bool(SPARK_FIXTURES & fixtures)
        elif mode == "s3":
            in_suite = any(relative.as_posix().startswith(s) for s in S3_SUITES)
            on_s3 = {"store_config", "store_paths", "s3_server", "live_server"} & fixtures
            keep = in_suite and bool(on_s3)
        else:
            keep = "s3_server" not in fixtures
        (kept if keep else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the `spark` fixture is parametrized by the run's mode (ids say which)."""
    if "spark_mode" in metafunc.fixturenames:
        mode = _spark_mode(metafunc.config)
        metafunc.parametrize("spark_mode", [mode], indirect=True, scope="session")


@pytest.fixture(scope="session")
def spark_mode(request: pytest.FixtureRequest) -> str:
    """`classic` (a local session in this process), `connect` (a local Connect server) or
    `cluster` (a session in this process on a local standalone cluster)."""
    return str(getattr(request, "param", _spark_mode(request.config)))


@pytest.fixture(scope="session")
def connect_server(
    spark_mode: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalConnectServer | None]:
    """The local Spark Connect server of a connect-mode run (None in classic mode)."""
    if spark_mode != "connect":
        yield None
        return
    warehouse = tmp_path_factory.mktemp("connect-warehouse")
    server = LocalConnectServer.start(
        replace(_session_config(warehouse), spark_ui_enabled=True),  # for `spark_jobs`
        log_dir=tmp_path_factory.mktemp("connect-logs"),
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark_cluster(
    spark_mode: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStandaloneCluster | None]:
    """The local standalone cluster of a cluster-mode run (None in the other modes): a master
    and two workers, each executor a JVM of its own; every process is stopped by its id."""
    if spark_mode != "cluster":
        yield None
        return
    cluster = LocalStandaloneCluster.start(
        log_dir=tmp_path_factory.mktemp("cluster"),
        workers=CLUSTER_WORKERS,
        worker_cores=CLUSTER_WORKER_CORES,
        worker_memory=CLUSTER_WORKER_MEMORY,
    )
    yield cluster
    cluster.stop()


TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# Cluster mode: two workers; the test session holds one single-core executor on each, and the
# spark-submitted jobs get the slots left (cores are scheduling slots, not the machine's cores).
CLUSTER_WORKERS = 2
CLUSTER_WORKER_CORES = 2
CLUSTER_WORKER_MEMORY = "2g"
CLUSTER_SESSION_CONF = {
    "spark.cores.max": "2",
    "spark.executor.cores": "1",
    "spark.executor.memory": "768m",
    "spark.executor.extraJavaOptions": TEST_JVM_OPTIONS,
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.executor.syncLogLevel.enabled": "true",  # get_spark's ERROR level on executors too
}


def _session_config(warehouse: Path) -> FeatureStoreConfig:
    return FeatureStoreConfig(
        storage_path=str(warehouse),
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        spark_warehouse_dir=str(warehouse),
        spark_conf={
            "spark.driver.memory": "2g",
            "spark.sql.adaptive.enabled": "true",
            # Small test data: the C1 compiler and serial GC cost far less CPU than C2's
            # compilations of a long run save on this 2-core machine (the Connect server too).
            "spark.driver.extraJavaOptions": TEST_JVM_OPTIONS,
        },
    )


@pytest.fixture(scope="session")
def spark(
    spark_mode: str,
    connect_server: LocalConnectServer | None,
    spark_cluster: LocalStandaloneCluster | None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[SparkSession]:
    """The one Delta-enabled Spark session of the test run: classic, over Spark Connect, or
    a classic driver on the local standalone cluster."""
    if connect_server is not None:
        config = replace(_session_config(Path(".")), spark_remote=connect_server.url)
    else:
        config = _session_config(tmp_path_factory.mktemp("warehouse"))
        if spark_mode == "s3":  # S3A reaches the run's SeaweedFS server
            server = request.getfixturevalue("s3_server")
            config = replace(config, storage=server.settings())
    if spark_cluster is not None:
        # Executors start their Python workers with the driver's PYSPARK_PYTHON.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        config = replace(
            config,
            spark_master=spark_cluster.url,
            spark_conf={**config.spark_conf, **CLUSTER_SESSION_CONF},
        )
    session = get_spark(config)
    yield session
    session.stop()


class SparkJobs:
    """The ids of the Spark jobs run so far: the status tracker of a classic session, the
    REST API of the server's UI over Connect (which has no sparkContext)."""

    def __init__(self, spark: SparkSession, ui_url: str | None) -> None:
        self.spark = spark
        self.ui_url = ui_url

    def ids(self) -> set[int]:
        if self.ui_url is None:
            return set(self.spark.sparkContext.statusTracker().getJobIdsForGroup(None))
        import json
        from urllib.request import urlopen

        with urlopen(f"{self.ui_url}/api/v1/applications", timeout=10) as response:
            (application,) = json.load(response)
        url = f"{self.ui_url}/api/v1/applications/{application['id']}/jobs"
        with urlopen(url, timeout=10) as response:
            return {int(job["jobId"]) for job in json.load(response)}

    @contextlib.contextmanager
    def started(self) -> Iterator[list[int]]:
        """Collects the ids of the jobs started inside the block."""
        before = self.ids()
        started: list[int] = []
        try:
            yield started
        finally:
            started.extend(sorted(self.ids() - before))


@pytest.fixture(scope="session")
def spark_jobs(spark: SparkSession, connect_server: LocalConnectServer | None) -> SparkJobs:
    """Counts the Spark jobs a block starts, in either mode (e.g. 'fails before any job')."""
    return SparkJobs(spark, connect_server.ui_url if connect_server else None)


class StorePaths:
    """Where a test's store lives: a folder of its own (classic, connect), or a prefix of its
    own in the run's S3 bucket (s3 mode), with the storage section to reach it."""

    def __init__(self, server: LocalS3Server | None) -> None:
        self.storage = server.settings() if server is not None else None

    def path(self, folder: Path) -> str:
        if self.storage is None:
            return str(folder / "store")
        return f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}/store"


@pytest.fixture(scope="session")
def store_paths(request: pytest.FixtureRequest) -> StorePaths:
    """Store roots for fixtures that build their own stores (module-scoped ones too)."""
    on_s3 = _spark_mode(request.config) == "s3"
    return StorePaths(request.getfixturevalue("s3_server") if on_s3 else None)


@pytest.fixture
def store_config(tmp_path: Path, request: pytest.FixtureRequest) -> FeatureStoreConfig:
    """A config whose store lives in this test's own tmp folder (on the run's Connect server
    in connect mode; under its own prefix of the run's S3 bucket in s3 mode)."""
    remote = None
    if _spark_mode(request.config) == "connect" and "spark" in request.fixturenames:
        server = request.getfixturevalue("connect_server")
        remote = server.url if server is not None else None
    path, storage = str(tmp_path / "store"), None
    if _spark_mode(request.config) == "s3":
        s3 = request.getfixturevalue("s3_server")
        path, storage = f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}/store", s3.settings()
    return FeatureStoreConfig(
        spark_remote=remote,
        storage_path=path,
        storage=storage,
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        max_retries=8,
        retry_backoff_ms=20,
        metadata_cache_ttl_seconds=60,
    )


# -- Redis ------------------------------------------------------------------------------------

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

REDIS_BINARY = "redis-server"


class RedisServer:
    """A redis-server process on a free loopback port, started for the tests."""

    def __init__(self, process: Any, port: int) -> None:
        self.process = process
        self.host = "127.0.0.1"
        self.port = port
        self.url = f"redis://{self.host}:{port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(workdir: Path) -> RedisServer:
    import shutil
    import subprocess
    import time

    binary = shutil.which(REDIS_BINARY)
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    for _ in range(5):
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(process, port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                import redis

                client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
                if client.ping():
                    client.close()
                    return server
            except Exception:
                time.sleep(0.05)
        server.stop()  # the port was taken in between, or the server did not come up
    raise RuntimeError("redis-server did not start on a free loopback port")


@pytest.fixture(scope="session")
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], RedisServer]]:
    """Start extra redis-servers (e.g. to kill one in a test); all stop at the end."""
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = _start_redis(tmp_path_factory.mktemp("redis"))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(redis_server_factory: Callable[[], RedisServer]) -> RedisServer:
    """The one shared redis-server of the test run (127.0.0.1, free port, no persistence)."""
    return redis_server_factory()


# -- S3: a SeaweedFS server on loopback -------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalS3Server]:
    """The run's SeaweedFS server (`weed server -s3`, free loopback ports), its credentials in
    AWS_* variables of this process and its Spark, a bucket `featurelake`; stopped by pid."""
    if find_weed() is None:
        message = "SeaweedFS is not built (bash scripts/build_seaweedfs.sh)"
        if _spark_mode(request.config) == "s3":
            pytest.fail(message)
        pytest.skip(message)
    server = LocalS3Server.start(tmp_path_factory.mktemp("seaweedfs"))
    saved = {key: os.environ.get(key) for key in server.environment()}
    os.environ.update(server.environment())
    server.create_bucket(S3_BUCKET)
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
