"""End-to-end demo on the local embedded default (local Spark + Delta on disk).

Generates the example retail data, registers the groups of conf/features/ and materializes
them into a fresh ./demo_store through the `featurelake` CLI, runs one scheduled job with
spark-submit, then shows what a user looks at: groups, versions, row counts, features of a few
customers, the table history, a point-in-time training set and online lookups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path("conf/featurelake.yaml")  # paths are relative to the repo, the demo's cwd
STORE = Path(os.environ.get("FEATURELAKE_DEMO_STORE", "demo_store"))  # tests use their own
SOURCES = STORE / "_sources"
CUSTOMERS = 1_000
console = Console(highlight=False)


def section(title: str) -> None:
    console.print()
    console.rule(f"[bold]{title}")


def command(*args: str) -> None:
    """Run the `featurelake` CLI in this process (it reuses this Spark session)."""
    from featurelake.cli import run

    console.print(f"[dim]$ featurelake {' '.join(args)}[/dim]")
    code = run(["--config", str(CONFIG), *args])
    if code != 0:
        sys.exit(f"featurelake {' '.join(args)} failed with exit code {code}")


def frame_table(frame: Any, title: str) -> Table:
    """A rich table of a small pandas frame."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*["-" if _missing(v) else _short(v) for v in row])
    return table


def _missing(value: Any) -> bool:
    try:
        return bool(value is None or value != value)
    except (TypeError, ValueError):
        return False


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def spark_submit(script: str, *args: str) -> dict[str, Any]:
    """Run a job from jobs/ with spark-submit (local master), as a scheduler would."""
    from featurelake.session import find_delta_jars

    jars = find_delta_jars()
    if not jars:
        sys.exit("The Delta jars are missing: run `make setup`.")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO / "src"),
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    }
    cmd = [
        str(bin_dir / "spark-submit"),
        "--master", "local[1]",
        "--jars", ",".join(str(jar) for jar in jars),
        "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--conf", "spark.ui.enabled=false",
        str(REPO / "jobs" / script),
        *args,
    ]  # fmt: skip
    shown = " ".join(["spark-submit", "--master", "local[1]", "...", f"jobs/{script}", *args])
    console.print(f"[dim]$ {shown}[/dim]")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        console.print(done.stdout[-3000:], done.stderr[-3000:], markup=False)
        sys.exit(f"jobs/{script} failed with exit code {done.returncode}")
    for line in lines[:-1]:
        console.print(f"  {line}", markup=False)  # the job's own log lines
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    started = time.perf_counter()
    os.chdir(REPO)
    shutil.rmtree(STORE, ignore_errors=True)
    os.environ["FEATURELAKE_STORAGE_PATH"] = str(STORE)  # the CLI and the job use it too

    from featurelake import FeatureStore
    from featurelake.cli.state import quiet_spark_logs
    from featurelake.examples import retail
    from featurelake.pipeline.runtime import load_settings
    from featurelake.session import get_spark

    config = load_settings(CONFIG)
    section("Starting Spark (local, Delta Lake)")
    spark = get_spark(quiet_spark_logs(config))
    store = FeatureStore(config, spark)
    console.print(f"Spark {spark.version}; store at {config.storage_path}")

    section("1. Example data: the upstream tables a feature pipeline reads")
    profiles = retail.customer_profiles(spark, customers=CUSTOMERS, snapshots=3)
    txn = retail.transaction_aggregates(spark, customers=CUSTOMERS, days=60)
    profiles.write.parquet(str(SOURCES / "customer_profiles"))
    txn.where("event_timestamp < '2024-02-15'").write.format("delta").save(
        str(SOURCES / "txn_history")
    )
    txn.where("event_timestamp >= '2024-02-15'").write.format("delta").save(
        str(SOURCES / "txn_latest")
    )
    console.print(f"{CUSTOMERS:,} customers: profile snapshots (Parquet) and 60 days of daily")
    console.print("transaction aggregates (Delta), split into history and the latest two weeks.")

    section("2. Register the feature groups of conf/features/ (the plan comes first)")
    command("apply")

    section("3. Materialize with the CLI")
    command("materialize", "customer_profile", "--source", str(SOURCES / "customer_profiles"))
    command(
        "materialize", "transaction_aggregates", "--source", str(SOURCES / "txn_history"),
        "--mode", "merge",
    )  # fmt: skip

    section("4. A scheduled job: jobs/materialize.py through spark-submit")
    result = spark_submit(
        "materialize.py", "--config", str(CONFIG), "--group", "transaction_aggregates",
        "--source", str(SOURCES / "txn_latest"), "--mode", "merge",
    )  # fmt: skip
    console.print(
        f"job result: {result['rows_written']:,} rows merged into {result['group']} "
        f"v{result['version']} (Delta version {result['delta_version']}), "
        f"{result['row_count']:,} rows in the table"
    )
    store.registry.invalidate()

    section("5. What is in the store")
    command("list")
    command("describe", "transaction_aggregates")

    section("6. Latest features of a few customers (offline, from the Gold tables)")
    refs = [
        "customer_profile.age",
        "customer_profile.segment",
        "customer_profile.lifetime_value",
        "transaction_aggregates.txn_count_7d",
        "transaction_aggregates.last_category",
    ]
    latest = store.get_features(refs, entity_ids=[1, 2, 3, 4, 5]).orderBy("customer_id")
    console.print(frame_table(latest.toPandas(), "store.get_features(refs, entity_ids=[1..5])"))

    section("7. Table history and time travel")
    history = Table(title="transaction_aggregates v1: Delta history", title_justify="left")
    for column in ("Delta version", "operation", "rows written", "rows in table", "at (UTC)"):
        history.add_column(column)
    for commit in reversed(store.history("transaction_aggregates")):
        rows = store.read_table("transaction_aggregates", as_of_version=commit.version).count()
        history.add_row(
            str(commit.version),
            commit.operation,
            f"{commit.rows_written:,}",
            f"{rows:,}",
            f"{commit.timestamp:%H:%M:%S}",
        )
    console.print(history)

    section("8. A point-in-time-correct training set")
    labels = retail.label_events(spark, customers=CUSTOMERS, rows=2_000)
    training = store.get_training_set(labels, refs, name="demo_churn")
    shown = ["customer_id", "event_timestamp", "churned", "segment", "txn_count_7d"]
    sample = training.df.select(*shown).orderBy(*shown[:2]).limit(6).toPandas()
    sample["event_timestamp"] = sample["event_timestamp"].dt.strftime("%Y-%m-%d %H:%M")
    console.print(frame_table(sample, "churn labels + features as of each label's own time"))
    console.print(f"{training.df.count():,} rows x {len(training.df.columns)} columns")
    for table in training.manifest.tables:
        console.print(
            f"read {table.group} v{table.group_version} at Delta version {table.delta_version}"
        )
    console.print("manifest kept as 'demo_churn': store.rebuild('demo_churn') gives the same rows")

    online_demo(config, spark)
    spark.stop()
    console.print()
    console.rule(f"[bold]Done in {time.perf_counter() - started:.0f} s")
    console.print(f"The store stays in ./{STORE} (`make clean` removes it). Try:")
    console.print("  .venv/bin/featurelake describe customer_profile")
    catalog_command(config)


def catalog_command(config: Any) -> None:
    """Print the command that serves the demo store with its catalog, and a key to sign in."""
    try:
        from featurelake.server.auth import ApiKeyStore
    except ImportError:
        return
    from featurelake.registry import Registry

    token = ApiKeyStore(Registry(config)).create("demo-catalog", "admin").token
    console.print()
    console.print(
        "Serve the demo store with its feature catalog, then open the /ui link it prints:"
    )
    console.print(f"  .venv/bin/featurelake --config {CONFIG} serve", soft_wrap=True)
    console.print(f"  sign in with the API key {token}", soft_wrap=True)


def online_demo(config: Any, spark: Any) -> None:
    """Sync the latest values online and look them up (in-process online store)."""
    try:
        from featurelake import FeatureStore
    except ImportError:
        return
    section("9. Online serving: sync the latest values, then look them up")
    online_config = config.replace(enable_online_store=True)
    with FeatureStore(online_config, spark) as features:
        for group in ("customer_profile", "transaction_aggregates"):
            synced = features.sync_to_online(group)
            console.print(
                f"synced {synced.group} v{synced.version} ({synced.mode}): "
                f"{synced.rows_written:,} entities in {synced.duration_seconds:.1f} s"
            )
        refs = ["customer_profile.segment", "transaction_aggregates.txn_count_7d"]
        features.get_online_features(refs, [1])  # warm up
        begin = time.perf_counter()
        lookups = 200
        for customer in range(1, lookups + 1):
            features.get_online_features(refs, [customer])
        per_lookup = (time.perf_counter() - begin) / lookups * 1000
        frame = features.get_online_features(refs, [1, 2, 3, 4, 5], as_frame=True)
        console.print(frame_table(frame, "store.get_online_features(refs, [1..5])"))
        console.print(f"{lookups} single-entity lookups: {per_lookup:.2f} ms each")


if __name__ == "__main__":
    main()
