"""Every job in jobs/ run for real with spark-submit, plus its error paths.

The jobs are submitted to a local master in classic mode and, in cluster mode, to the run's
standalone cluster with the command jobs/README.md gives (the Delta jars shipped with `--jars`,
the executors' Python set with `spark.pyspark.python`). The spark-submit runs start together in
one module fixture (each costs a JVM and ~15 s) and each test waits for its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
import redis
import yaml
from loguru import logger
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.examples import retail
from featurelake.logs import disable_logging
from featurelake.schema import load_groups
from featurelake.serving import FeatureStore
from featurelake.session import find_delta_jars
from featurelake.standalone_cluster import LocalStandaloneCluster
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
EXAMPLE_FEATURES = REPO / "conf" / "features"
VENV_BIN = Path(sys.executable).parent
TIMEOUT = 600
REDIS_DB = 12  # a database of the shared test redis-server of its own


@dataclass
class Run:
    """One spark-submit process; output goes to files (no pipe can fill up and block it)."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def wait(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=TIMEOUT)
        return code, self.stdout.read_text(), self.stderr.read_text()


def submit_options(master: str) -> list[str]:
    """spark-submit's options before the job file: jobs/README.md's command for `master`."""
    jars = find_delta_jars()
    assert jars, "run `make setup` to fetch the Delta jars"
    options = [
        "--master", master,
        "--jars", ",".join(str(jar) for jar in jars),
        "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--conf", f"spark.pyspark.python={sys.executable}",
    ]  # fmt: skip
    if master.startswith("spark://"):  # one small executor each: the test session runs too
        options += ["--total-executor-cores", "1", "--executor-memory", "512m"]
    # This machine's sizes: a small driver, no UI, two shuffle partitions.
    options += ["--driver-memory", "1g", "--conf", "spark.ui.enabled=false"]
    return [*options, "--conf", "spark.sql.shuffle.partitions=2"]


def spark_submit(script: str, args: list[str], workdir: Path, label: str, master: str) -> Run:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        # Short-lived JVMs: the C1 compiler and serial GC halve the CPU a run costs.
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    }
    # As in an activated venv; spark.pyspark.python (not the environment) names the Python.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYSPARK_PYTHON", None)
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    command = [
        str(VENV_BIN / "spark-submit"),
        *submit_options(master),
        str(JOBS / script),
        *args,
    ]
    stdout, stderr = workdir / f"{label}.out", workdir / f"{label}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=err)
    return Run(process, stdout, stderr)


def result_line(stdout: str, *, many: bool = False) -> Any:
    """The job's result: the last stdout line, JSON (an object, or a list with `many`)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "the job printed no result"
    loaded = json.loads(lines[-1])
    assert isinstance(loaded, list if many else dict)
    return loaded


def write_config(path: Path, storage: Path, **extra: object) -> Path:
    settings = {
        "storage_path": str(storage),
        "spark_master": "local[2]",  # spark-submit's --master must win
        "spark_shuffle_partitions": 2,
        "metadata_cache_ttl_seconds": 0,
        **extra,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@dataclass
class Setup:
    root: Path
    empty_config: Path  # groups registered, no data: materialize and backfill write here
    full_config: Path  # groups with data: the training set reads here
    online_config: Path  # customer_profile with data, and a Redis online store
    master: str  # where the jobs were submitted
    profiles: Path
    txn: Path
    labels: Path
    runs: dict[str, Run]

    def store(self, spark: SparkSession, config: Path) -> MaterializedFeatureStore:
        return MaterializedFeatureStore(
            StoreContext.of(FeatureStoreConfig.from_yaml(config, environ={}), spark)
        )


@pytest.fixture(scope="module")
def setup(
    spark: SparkSession,
    spark_cluster: LocalStandaloneCluster | None,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: Any,
) -> Iterator[Setup]:
    master = spark_cluster.url if spark_cluster is not None else "local[1]"
    root = tmp_path_factory.mktemp("jobs")
    groups = load_groups(EXAMPLE_FEATURES)
    empty = write_config(root / "empty.yaml", root / "empty_store")
    full = write_config(root / "full.yaml", root / "full_store")
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    online = write_config(
        root / "online.yaml",
        root / "online_store",
        enable_online_store=True,
        online_backend="redis",
        online_url=url,
    )
    profiles, txn, labels = root / "profiles", root / "txn", root / "labels.csv"
    profile_rows = retail.customer_profiles(spark, customers=20, snapshots=2)
    txn_rows = retail.transaction_aggregates(spark, customers=20, days=10)
    profile_rows.write.parquet(str(profiles))
    txn_rows.write.format("delta").save(str(txn))
    retail.label_events(spark, customers=20, rows=40).toPandas().to_csv(labels, index=False)
    for config in (empty, online, full):
        store = MaterializedFeatureStore(
            StoreContext.of(FeatureStoreConfig.from_yaml(config, environ={}), spark)
        )
        for group in groups:
            store.register_features(group)
        if config != empty:
            store.write_features("customer_profile", profile_rows)
    store.write_features("transaction_aggregates", txn_rows)

    runs = {
        "materialize": spark_submit(
            "materialize.py",
            ["--config", str(empty), "--group", "customer_profile", "--source", str(profiles)],
            root,
            "materialize",
            master,
        ),
        "backfill": spark_submit(
            "backfill.py",
            ["--config", str(empty), "--group", "transaction_aggregates", "--source", str(txn),
             "--start", "2024-01-03", "--end", "2024-01-06"],
            root,
            "backfill",
            master,
        ),
        "training_set": spark_submit(
            "training_set.py",
            ["--config", str(full), "--entities", str(labels),
             "--features", "customer_profile.age,customer_profile.segment",
             "transaction_aggregates.txn_count_7d", "--out", str(root / "training"),
             "--name", "churn"],
            root,
            "training_set",
            master,
        ),
        "sync_online": spark_submit(
            "sync_online.py",
            ["--config", str(online), "--group", "customer_profile"],
            root,
            "sync_online",
            master,
        ),
        "failure": spark_submit(
            "materialize.py",
            ["--config", str(empty), "--group", "no_such_group", "--source", str(profiles)],
            root,
            "failure",
            master,
        ),
    }  # fmt: skip
    yield Setup(root, empty, full, online, master, profiles, txn, labels, runs)
    for run in runs.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_materialize_job(setup: Setup, spark: SparkSession) -> None:
    code, stdout, stderr = setup.runs["materialize"].wait()
    assert code == 0, stderr[-3000:]
    result = result_line(stdout)
    assert result["group"] == "customer_profile" and result["mode"] == "append"
    assert result["rows_written"] == 40
    store = setup.store(spark, setup.empty_config)
    assert store.read_table("customer_profile").count() == 40
    lineage = store.registry.group_state("customer_profile").lineage
    assert lineage[-1]["job"] == "jobs/materialize.py"
    assert lineage[-1]["sources"] == [str(setup.profiles)]
    # spark-submit passes the Python driver's stderr (loguru, enabled by the job) to stdout.
    assert "materialize done" in stdout + stderr
    assert f"materialize: Spark 4.0.1 on {setup.master}" in stdout + stderr


def test_backfill_job(setup: Setup, spark: SparkSession) -> None:
    code, stdout, stderr = setup.runs["backfill"].wait()
    assert code == 0, stderr[-3000:]
    assert result_line(stdout)["mode"] == "backfill"
    table = setup.store(spark, setup.empty_config).read_table("transaction_aggregates")
    times = {row[0] for row in table.select("event_timestamp").distinct().collect()}
    assert times and all(datetime(2024, 1, 3) <= t < datetime(2024, 1, 6) for t in times)
    source = spark.read.format("delta").load(str(setup.txn))
    in_range = source.where("event_timestamp >= '2024-01-03' AND event_timestamp < '2024-01-06'")
    assert table.count() == in_range.count()


def test_training_set_job(setup: Setup, spark: SparkSession) -> None:
    code, stdout, stderr = setup.runs["training_set"].wait()
    assert code == 0, stderr[-3000:]
    result = result_line(stdout)
    assert result["rows"] == 40
    written = spark.read.parquet(str(setup.root / "training"))
    assert set(written.columns) == {
        "customer_id", "event_timestamp", "churned", "age", "segment", "txn_count_7d",
    }  # fmt: skip
    # Same rows as the library builds in this process from the same store.
    store = setup.store(spark, setup.full_config)
    labels = pd.read_csv(setup.labels, parse_dates=["event_timestamp"])
    expected = store.get_historical_features(
        labels, ["customer_profile.age", "customer_profile.segment",
                 "transaction_aggregates.txn_count_7d"],
    )  # fmt: skip
    key = ["customer_id", "event_timestamp", "churned"]
    columns = [*key, "age", "segment", "txn_count_7d"]
    got = written.select(*columns).toPandas().sort_values(key).reset_index(drop=True)
    want = expected.select(*columns).toPandas().sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    rebuilt = store.rebuild("churn")
    assert rebuilt.df.count() == 40


def test_sync_online_job(setup: Setup, spark: SparkSession) -> None:
    code, stdout, stderr = setup.runs["sync_online"].wait()
    assert code == 0, (stdout + stderr)[-3000:]
    (result,) = result_line(stdout, many=True)
    assert result["group"] == "customer_profile" and result["mode"] == "full"
    assert result["rows_written"] == 20  # one row per customer: the latest values
    config = FeatureStoreConfig.from_yaml(setup.online_config, environ={})
    refs = ["customer_profile.age", "customer_profile.segment"]
    offline = (
        MaterializedFeatureStore(StoreContext.of(config, spark))
        .get_features(refs, [1, 2, 3])
        .toPandas()
    )
    with FeatureStore(config, spark) as features:  # another process reads what the job synced
        online = features.get_online_features(refs, [1, 2, 3], as_frame=True)
    columns = ["customer_id", "age", "segment"]
    pd.testing.assert_frame_equal(
        online[columns].sort_values("customer_id").reset_index(drop=True),
        offline[columns].sort_values("customer_id").reset_index(drop=True),
        check_dtype=False,
    )


def test_a_failing_job_exits_non_zero_through_spark_submit(setup: Setup) -> None:
    code, stdout, stderr = setup.runs["failure"].wait()
    assert code == 2
    assert "materialize failed: FeatureGroupNotFoundError" in stdout + stderr
    assert "no_such_group" in stdout + stderr


# -- in this process: the active session is used, errors are typed -------------------------------


def load_job(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    yield
    disable_logging()
    logger.remove()


@pytest.mark.usefixtures("quiet_logs")
def test_jobs_in_process_use_the_active_session_and_report_typed_errors(
    setup: Setup, spark: SparkSession, capfd: pytest.CaptureFixture[str]
) -> None:
    materialize = load_job("materialize")
    base = ["--config", str(setup.full_config), "--source", str(setup.profiles)]
    code = materialize.main([*base, "--group", "customer_profile@3"])
    assert code == 2
    err = capfd.readouterr().err
    assert "FeatureGroupNotFoundError" in err and "customer_profile' v3" in err
    assert "Traceback" not in err

    code = materialize.main([*base, "--group", "transaction_aggregates"])
    assert code == 2
    assert "SchemaValidationError" in capfd.readouterr().err

    sync = load_job("sync_online").main(["--config", str(setup.full_config)])
    assert sync == 2
    assert "online store is not enabled" in capfd.readouterr().err

    overwrite = load_job("materialize").main(
        [*base, "--group", "customer_profile", "--mode", "overwrite"]
    )
    assert overwrite == 0
    assert result_line(capfd.readouterr().out)["mode"] == "overwrite"


@pytest.mark.parametrize(
    ("job", "args", "message"),
    [
        ("materialize", ["--group", "g"], "--source"),
        ("materialize", ["--group", "g", "--source", "s", "--mode", "upsert"], "invalid choice"),
        ("backfill", ["--group", "g", "--source", "s", "--start", "2024-01-01"], "--end"),
        ("backfill", ["--group", "g", "--source", "s", "--start", "soon", "--end", "2024-02-01"],
         "not a date or time"),
        ("training_set", ["--entities", "e.csv", "--out", "o"], "--features"),
    ],
)  # fmt: skip
def test_job_argument_errors_exit_2(
    job: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        load_job(job).main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
