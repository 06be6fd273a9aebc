"""The `featurelake` command: every command through Typer's runner, one as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from pyspark.sql import SparkSession
from typer.testing import CliRunner, Result

from featurelake.cli import app
from featurelake.cli.state import quiet_spark_logs
from featurelake.config import FeatureStoreConfig
from featurelake.examples import retail
from featurelake.schema import load_groups
from featurelake.serving import FeatureStore
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_FEATURES = REPO / "conf" / "features"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Project:
    root: Path
    config: Path
    features: Path
    profiles: Path  # parquet source of customer_profile
    txn: Path  # Delta source of transaction_aggregates
    storage: Path

    def store(self, spark: SparkSession) -> MaterializedFeatureStore:
        config = FeatureStoreConfig.from_yaml(self.config, environ={})
        return MaterializedFeatureStore(StoreContext.of(config, spark))


def write_config(path: Path, storage: Path, **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "storage_path": str(storage),
        "spark_master": "local[1]",
        "spark_shuffle_partitions": 1,
        "retry_backoff_ms": 20,
        "metadata_cache_ttl_seconds": 0,
        **extra,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def project(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project with the example groups in conf/features and two sources (not yet applied)."""
    root = tmp_path_factory.mktemp("cli_project")
    features = root / "conf" / "features"
    shutil.copytree(EXAMPLE_FEATURES, features)
    config = write_config(root / "conf" / "featurelake.yaml", root / "store")
    profiles, txn = root / "src" / "profiles", root / "src" / "txn"
    retail.customer_profiles(spark, customers=30, snapshots=2).write.parquet(str(profiles))
    retail.transaction_aggregates(spark, customers=30, days=10).write.format("delta").save(str(txn))
    return Project(root, config, features, profiles, txn, root / "store")


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    yield CliRunner(env={"COLUMNS": "200"})


def invoke(runner: CliRunner, project: Project, *args: str) -> Result:
    return runner.invoke(app, ["--config", str(project.config), *args])


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# -- init ---------------------------------------------------------------------------------------


def test_init_scaffolds_a_project_that_loads(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = FeatureStoreConfig.from_yaml(tmp_path / "conf" / "featurelake.yaml", environ={})
    assert config.storage_path == "./feature_store"
    groups = load_groups(tmp_path / "conf" / "features")
    assert [g.name for g in groups] == ["customer_activity"]
    assert "featurelake apply" in result.stdout

    again = runner.invoke(app, ["init", str(tmp_path)])
    assert_one_line_error(again, 2, "already exist", "--force")
    assert runner.invoke(app, ["init", str(tmp_path), "--force"]).exit_code == 0


# -- apply --------------------------------------------------------------------------------------


def test_apply_shows_the_plan_then_registers(
    runner: CliRunner, project: Project, spark: SparkSession
) -> None:
    dry = invoke(runner, project, "apply", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert plan["applied"] is False
    assert {(s["group"], s["action"]) for s in plan["plan"]} == {
        ("customer_profile", "created"),
        ("transaction_aggregates", "created"),
    }
    assert project.store(spark).registry.list_groups() == []

    applied = invoke(runner, project, "apply")
    assert applied.exit_code == 0, applied.output
    assert "created" in applied.stdout and "Applied: 2 created." in applied.stdout
    assert [g.name for g in project.store(spark).registry.list_groups()] == [
        "customer_profile",
        "transaction_aggregates",
    ]

    again = invoke(runner, project, "apply")
    assert again.exit_code == 0
    assert "Nothing to change: 2 unchanged." in again.stdout


def test_apply_updates_compatible_changes_and_refuses_incompatible_ones(
    runner: CliRunner, project: Project, spark: SparkSession, tmp_path: Path
) -> None:
    # A store of its own: this test changes the registered groups.
    own = Project(
        tmp_path,
        write_config(tmp_path / "conf" / "featurelake.yaml", tmp_path / "store"),
        tmp_path / "conf" / "features",
        project.profiles,
        project.txn,
        tmp_path / "store",
    )
    shutil.copytree(project.features, own.features)
    project = own
    assert invoke(runner, project, "apply").exit_code == 0
    empty = json.loads(invoke(runner, project, "describe", "customer_profile", "--json").stdout)
    assert empty["freshness"]["status"] == "no data" and empty["versions"][0]["rows"] is None
    changed = tmp_path / "changed"
    shutil.copytree(project.features, changed)
    profile_file = changed / "customer_profile.yaml"
    profile = yaml.safe_load(profile_file.read_text())
    profile["features"].append({"name": "email_opt_in", "type": "boolean"})
    profile_file.write_text(yaml.safe_dump(profile))

    updated = invoke(runner, project, "apply", "--features", str(changed), "--json")
    assert updated.exit_code == 0, updated.output
    steps = {s["group"]: s for s in json.loads(updated.stdout)["plan"]}
    assert steps["customer_profile"]["action"] == "updated"
    assert "adds email_opt_in" in steps["customer_profile"]["detail"]
    assert steps["transaction_aggregates"]["action"] == "unchanged"
    registered = project.store(spark).registry.get_group("customer_profile")
    assert "email_opt_in" in registered.feature_names

    txn_file = changed / "transaction_aggregates.yaml"
    txn = yaml.safe_load(txn_file.read_text())
    txn["features"][0]["type"] = "int"  # retyping needs a new version
    txn_file.write_text(yaml.safe_dump(txn))
    profile["features"].append({"name": "newsletter", "type": "boolean"})
    profile_file.write_text(yaml.safe_dump(profile))

    refused = invoke(runner, project, "apply", "--features", str(changed))
    assert_one_line_error(refused, 2, "Nothing was applied", "transaction_aggregates v1")
    assert "INCOMPATIBLE" in refused.stdout and "bump the group version" in refused.stderr
    # Nothing applied: the compatible change of the other group waited too.
    registered = project.store(spark).registry.get_group("customer_profile")
    assert "newsletter" not in registered.feature_names


# -- materialize, backfill, list, describe ------------------------------------------------------


def test_materialize_backfill_list_and_describe(
    runner: CliRunner, project: Project, spark: SparkSession
) -> None:
    assert invoke(runner, project, "apply").exit_code == 0

    wrote = invoke(
        runner, project, "materialize", "customer_profile", "--source", str(project.profiles),
        "--json",
    )  # fmt: skip
    assert wrote.exit_code == 0, wrote.output
    summary = json.loads(wrote.stdout)
    assert summary["group"] == "customer_profile" and summary["mode"] == "append"
    assert summary["rows_written"] == 60 and summary["row_count"] == 60

    merged = invoke(
        runner, project, "materialize", "transaction_aggregates", "--source", str(project.txn),
        "--mode", "merge",
    )  # fmt: skip
    assert merged.exit_code == 0, merged.output
    assert "merged" in merged.stdout and "now holds" in merged.stdout
    txn_rows = project.store(spark).read_table("transaction_aggregates").count()

    backfilled = invoke(
        runner, project, "backfill", "transaction_aggregates", "--source", str(project.txn),
        "--start", "2024-01-03", "--end", "2024-01-05", "--json",
    )  # fmt: skip
    assert backfilled.exit_code == 0, backfilled.output
    result = json.loads(backfilled.stdout)
    assert result["mode"] == "backfill"
    assert result["row_count"] == txn_rows  # same rows replaced by themselves
    assert 0 < result["rows_written"] < txn_rows

    listed = invoke(runner, project, "list", "--json")
    assert listed.exit_code == 0, listed.output
    groups = {g["group"]: g for g in json.loads(listed.stdout)}
    assert groups["customer_profile"]["rows"] == 60
    assert groups["transaction_aggregates"]["rows"] == txn_rows
    assert groups["customer_profile"]["last_updated"] is not None

    table = invoke(runner, project, "list")
    assert "customer_profile" in table.stdout and "transaction_aggregates" in table.stdout

    described = invoke(runner, project, "describe", "transaction_aggregates", "--json")
    assert described.exit_code == 0, described.output
    info = json.loads(described.stdout)
    assert info["version"] == 1 and info["table"].endswith("gold/transaction_aggregates/v1")
    assert info["schema"]["features"][0]["name"] == "txn_count_7d"
    assert info["versions"][0]["writes"] == 2 and info["versions"][0]["last_mode"] == "backfill"
    assert [item["job"] for item in info["lineage"]] == [
        "featurelake materialize",
        "featurelake backfill",
    ]
    assert info["lineage"][0]["sources"] == [str(project.txn)]
    assert info["freshness"]["status"] == "no target"
    assert info["freshness"]["latest_event"].startswith("2024-01-10")

    labels = project.root / "labels.csv"
    retail.label_events(spark, customers=30, rows=25).toPandas().to_csv(labels, index=False)
    out = project.root / "training"
    built = invoke(
        runner, project, "training-set", "--entities", str(labels),
        "-f", "customer_profile.age,customer_profile.segment", "-f", "transaction_aggregates.*",
        "--out", str(out), "--name", "churn", "--json",
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    report = json.loads(built.stdout)
    assert report["rows"] == 25 and report["output"] == str(out)
    assert {"age", "segment", "txn_count_7d", "last_category"} <= set(report["columns"])
    read = {t["group"]: t["delta_version"] for t in report["manifest"]["tables"]}
    assert set(read) == {"customer_profile", "transaction_aggregates"}
    assert spark.read.parquet(str(out)).count() == 25
    assert project.store(spark).rebuild("churn").df.count() == 25
    again = invoke(runner, project, "training-set", "-e", str(labels), "-f",
                   "customer_profile.age", "--out", str(out))  # fmt: skip
    assert_one_line_error(again, 2, "already exists", "--overwrite")

    human = invoke(runner, project, "describe", "customer_profile@1")
    assert human.exit_code == 0, human.output
    for text in ("customer_profile v1", "lifetime_value", "18 .. 110", "Freshness", "Lineage"):
        assert text in human.stdout


def test_user_errors_exit_2_with_one_line(runner: CliRunner, project: Project) -> None:
    assert invoke(runner, project, "apply").exit_code == 0
    source = str(project.profiles)

    assert_one_line_error(
        invoke(runner, project, "materialize", "nope", "--source", source),
        2,
        "FeatureGroupNotFoundError",
        "'nope'",
    )
    assert_one_line_error(
        invoke(runner, project, "describe", "customer_profile@7"), 2, "v7", "versions: 1"
    )
    assert_one_line_error(
        invoke(runner, project, "materialize", "customer_profile", "--source", "/no/such/dir"),
        2,
        "does not exist",
    )
    # A batch that breaks the schema: the txn rows lack the profile's columns.
    assert_one_line_error(
        invoke(runner, project, "materialize", "customer_profile", "--source", str(project.txn)),
        2,
        "SchemaValidationError",
    )
    write = ["materialize", "customer_profile", "--source", source]
    backfill = ["backfill", "customer_profile", "--source", source]
    assert_one_line_error(invoke(runner, project, *write, "--mode", "upsert"), 2, "--mode")
    assert_one_line_error(invoke(runner, project, *backfill, "--start", "2024-01-01"), 2, "--end")
    assert_one_line_error(
        invoke(runner, project, *backfill, "--start", "yesterday", "--end", "2024-02-01"),
        2,
        "not a date or time",
    )
    assert_one_line_error(
        invoke(runner, project, *write, "--start", "2024-01-01", "--end", "2024-02-01",
               "--mode", "merge"),
        2,
        "drop --mode",
    )  # fmt: skip
    assert_one_line_error(invoke(runner, project, "frobnicate"), 2, "No such command")
    assert_one_line_error(
        runner.invoke(app, ["--config", str(project.root / "missing.yaml"), "list"]),
        2,
        "ConfigurationError",
        "featurelake init",
    )
    assert_one_line_error(
        runner.invoke(app, ["--spark-conf", "no-equals-sign", "list"]), 2, "key=value"
    )


def test_sync_online_to_redis(
    runner: CliRunner, project: Project, spark: SparkSession, tmp_path: Path, redis_server: Any
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/11"  # a database of its own
    redis.Redis.from_url(url).flushdb()
    own = Project(
        tmp_path,
        write_config(
            tmp_path / "conf" / "featurelake.yaml",
            tmp_path / "store",
            enable_online_store=True,
            online_backend="redis",
            online_url=url,
        ),
        tmp_path / "conf" / "features",
        project.profiles,
        project.txn,
        tmp_path / "store",
    )
    shutil.copytree(project.features, own.features)
    assert invoke(runner, own, "apply").exit_code == 0
    source = str(own.profiles)
    assert invoke(runner, own, "materialize", "customer_profile", "--source", source).exit_code == 0

    synced = invoke(runner, own, "sync-online", "customer_profile", "--json")
    assert synced.exit_code == 0, synced.output
    (result,) = json.loads(synced.stdout)
    assert result["mode"] == "full" and result["rows_written"] == 30
    again = invoke(runner, own, "sync-online")  # every group with data: nothing new
    assert again.exit_code == 0, again.output
    assert "up_to_date" in again.stdout
    assert "transaction_aggregates has no data yet: not synced" in again.stderr

    config = FeatureStoreConfig.from_yaml(own.config, environ={})
    with FeatureStore(config, spark) as features:
        vector = features.get_online_features(["customer_profile.segment"], [7])[0]
    latest = own.store(spark).get_features("customer_profile.segment", [7]).collect()[0]
    assert vector.get("segment") == latest["segment"]

    health = json.loads(invoke(runner, own, "health", "--json").stdout)
    assert health["healthy"] is True and health["checks"]["online"]["backend"] == "redis"

    assert_one_line_error(invoke(runner, project, "sync-online"), 2, "online store is not enabled")
    memory = write_config(tmp_path / "memory.yaml", tmp_path / "store", enable_online_store=True)
    assert_one_line_error(
        runner.invoke(app, ["--config", str(memory), "sync-online"]), 2, "online_backend: redis"
    )
    assert_one_line_error(invoke(runner, own, "sync-online", "--since", "last week"), 2, "--since")


def test_health_reports_the_store(runner: CliRunner, project: Project) -> None:
    assert invoke(runner, project, "apply").exit_code == 0
    result = invoke(runner, project, "health", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["checks"]["registry"] is True and report["checks"]["groups"] >= 2
    assert report["storage_path"] == str(project.storage)
    assert invoke(runner, project, "health").stdout.strip().endswith("healthy")


def test_report_writes_html_and_json(runner: CliRunner, project: Project, tmp_path: Path) -> None:
    assert invoke(runner, project, "apply").exit_code == 0
    wrote = invoke(
        runner, project, "materialize", "customer_profile", "--source", str(project.profiles),
    )  # fmt: skip
    assert wrote.exit_code == 0, wrote.output
    result = invoke(
        runner, project, "report", "customer_profile", "--out", str(tmp_path / "r"), "--json"
    )
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)
    html = Path(paths["html"]).read_text()
    assert "customer_profile" in html and "<svg" in html
    report = json.loads(Path(paths["json"]).read_text())
    assert report["group"] == "customer_profile" or "customer_profile" in json.dumps(report)
    missing = invoke(runner, project, "report", "no_such_group")
    assert_one_line_error(missing, 2, "no_such_group")


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 0
    for command in ("init", "apply", "list", "describe", "materialize", "backfill",
                    "training-set", "sync-online", "health"):  # fmt: skip
        assert command in result.stdout


# -- a real process -----------------------------------------------------------------------------


def test_cli_as_a_real_process(project: Project, tmp_path: Path) -> None:
    """The installed entry point, its own Spark session, global options, exit codes."""
    cli = shutil.which("featurelake", path=str(VENV_BIN)) or str(VENV_BIN / "featurelake")
    env = {
        **os.environ,
        "FEATURELAKE_STORAGE_PATH": str(tmp_path / "store"),
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # a short-lived JVM
    }
    usage = subprocess.run(
        [cli, "materialize", "customer_profile"], capture_output=True, text=True, env=env
    )
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines() == [
        "Error: Missing option '--source' / '-s'. (see 'featurelake materialize --help')"
    ]

    health = subprocess.run(
        [cli, "--config", str(project.config), "--spark-conf",
         "spark.sql.shuffle.partitions=3", "health", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert health.returncode == 0, health.stderr[-3000:]
    report = json.loads(health.stdout)
    assert report["healthy"] is True
    assert report["storage_path"] == str(tmp_path / "store")  # env overrides the file
    assert report["spark"]["settings"] == {"spark.sql.shuffle.partitions": "3"}
    assert report["spark"]["master"] == "local[1]"
    assert "INFO" not in health.stderr  # Spark's startup chatter is kept off the terminal


def test_spark_chatter_is_quieted_unless_the_user_configured_logging(tmp_path: Path) -> None:
    config = FeatureStoreConfig(storage_path=str(tmp_path), spark_conf={"a": "1"})
    quiet = quiet_spark_logs(config).spark_conf
    assert quiet["a"] == "1"
    option = quiet["spark.driver.extraJavaOptions"]
    assert option.startswith("-Dlog4j2.configurationFile=")
    assert "rootLogger.level = error" in Path(option.split("=", 1)[1]).read_text()
    own = config.replace(spark_conf={"spark.driver.extraJavaOptions": "-Dlog4j2.level=INFO"})
    assert quiet_spark_logs(own) == own
