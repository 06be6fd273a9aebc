"""Schedules: cron in the schema, the local scheduler's slot claims, exports, the CLI."""

from __future__ import annotations

import ast
import importlib.util
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml
from croniter import croniter
from typer.testing import CliRunner

from featurelake.cli import app
from featurelake.errors import ConfigurationError, SchemaValidationError
from featurelake.quality.freshness import MATERIALIZATION_RUN
from featurelake.registry import Registry
from featurelake.scheduling.export import ExportSettings, airflow_dag, crontab, databricks_job
from featurelake.scheduling.runner import Scheduler, SlotRun
from featurelake.scheduling.schedules import latest_slot, to_quartz
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

Stores = Callable[[str], MaterializedFeatureStore]


def test_schedule_and_source_in_the_schema(kit: SimpleNamespace) -> None:
    schema = kit.group(
        {"table": "silver/orders", "query": kit.query, "options": {"maxFilesPerTrigger": 10}},
        materialization_schedule="*/15  * * * *",
        freshness="1h",
    )
    assert schema.materialization_schedule == "*/15 * * * *"
    assert schema.source is not None and schema.source.reads_changes
    assert schema.source.options == {"maxFilesPerTrigger": "10"}
    assert FeatureGroupSchema.from_dict(schema.to_dict()) == schema
    assert kit.group("main.silver.orders").source.table == "main.silver.orders"
    with pytest.raises(SchemaValidationError, match="not a valid 5-field cron"):
        kit.group(None, materialization_schedule="every hour")
    with pytest.raises(SchemaValidationError, match="not a valid 5-field cron"):
        kit.group(None, materialization_schedule="0 0 * * * *")
    with pytest.raises(SchemaValidationError, match="neither a table nor a query"):
        kit.group({"transform": "a:b"})
    with pytest.raises(SchemaValidationError, match="'module:function'"):
        kit.group({"table": "t", "transform": "not a function"})
    with pytest.raises(SchemaValidationError, match="unknown key"):
        kit.group({"table": "t", "path": "x"})


def test_quartz_form_of_cron_schedules() -> None:
    assert to_quartz("*/15 * * * *") == "0 0,15,30,45 * * * ?"
    assert to_quartz("30 2 * * 1-5") == "0 30 2 ? * MON,TUE,WED,THU,FRI"
    assert to_quartz("0 0 1 * *") == "0 0 0 1 * ?"
    assert to_quartz("5 4 * * 7") == "0 5 4 ? * SUN"
    with pytest.raises(ConfigurationError, match="both the day of the month"):
        to_quartz("0 0 1 * 1")


def test_two_schedulers_run_each_slot_once_and_catch_up_once(
    kit: SimpleNamespace, make_store: Stores
) -> None:
    path = kit.silver(kit.rows(range(6)))
    first = make_store("shared")
    first.register_features(
        kit.group({"table": path, "query": kit.query}, materialization_schedule="*/5 * * * *")
    )
    # A second process's view of the same store: its own registry and caches.
    second = MaterializedFeatureStore(
        StoreContext.of(first.config, first.spark, Registry(first.config))
    )
    schedulers = [Scheduler(first, owner="a"), Scheduler(second, owner="b")]

    def tick(now: datetime) -> list[SlotRun]:
        barrier = threading.Barrier(len(schedulers))
        results: list[SlotRun] = []

        def run(scheduler: Scheduler) -> None:
            barrier.wait()
            results.extend(scheduler.run_pending(now))

        threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    at = datetime(2024, 3, 1, 12, 2)
    assert [(r.slot, r.outcome) for r in tick(at)] == [(datetime(2024, 3, 1, 12), "succeeded")]
    assert tick(at) == []  # the same slot never runs twice
    assert [r.slot for r in tick(datetime(2024, 3, 1, 12, 7))] == [datetime(2024, 3, 1, 12, 5)]
    # Down from 12:07 to 12:31: the five missed slots are caught up by one run of 12:30.
    caught_up = tick(datetime(2024, 3, 1, 12, 31, 40))
    assert [(r.slot, r.outcome) for r in caught_up] == [(datetime(2024, 3, 1, 12, 30), "succeeded")]
    assert caught_up[0].run is not None and caught_up[0].run.mode == "up_to_date"

    runs = first.registry.events(MATERIALIZATION_RUN, "spend@1")
    assert [r["slot"] for r in runs] == [
        "2024-03-01T12:00:00",
        "2024-03-01T12:05:00",
        "2024-03-01T12:30:00",
    ]
    assert [r["outcome"] for r in runs] == ["succeeded"] * 3
    assert runs[0]["rows_written"] == 6 and runs[0]["gold_version"] is not None
    assert {"started_at", "ended_at", "to_version"} <= set(runs[0])
    assert len(first.read_table("spend").collect()) == 6
    assert latest_slot("*/5 * * * *", datetime(2024, 3, 1, 12, 30)) == datetime(2024, 3, 1, 12, 30)


def _scheduled(kit: SimpleNamespace) -> list[FeatureGroupSchema]:
    return [
        kit.group({"table": "silver/x", "query": kit.query}, materialization_schedule="0 * * * *"),
        kit.group(
            {"table": "silver/y"}, name="daily_spend", materialization_schedule="30 2 * * 1-5"
        ),
    ]


def test_databricks_export_has_what_the_jobs_api_needs(kit: SimpleNamespace) -> None:
    settings = ExportSettings(project_root="/Workspace/Repos/me/features")
    hourly, daily = _scheduled(kit)
    job = json.loads(json.dumps(databricks_job(daily, settings)))
    assert job["name"] == "featurelake_daily_spend_v1" and job["max_concurrent_runs"] == 1
    assert job["schedule"] == {
        "quartz_cron_expression": "0 30 2 ? * MON,TUE,WED,THU,FRI",
        "timezone_id": "UTC",
        "pause_status": "UNPAUSED",
    }
    (task,) = job["tasks"]
    assert task["task_key"] and task["job_cluster_key"] == "featurelake"
    assert task["spark_python_task"] == {
        "python_file": "/Workspace/Repos/me/features/jobs/materialize_source.py",
        "parameters": [
            "--config",
            "/Workspace/Repos/me/features/conf/featurelake.yaml",
            "--group",
            "daily_spend@1",
        ],
    }
    (cluster,) = job["job_clusters"]
    assert {"spark_version", "node_type_id", "num_workers"} <= set(cluster["new_cluster"])
    on_cluster = databricks_job(hourly, ExportSettings(cluster_id="0101-abc"))
    assert on_cluster["tasks"][0]["existing_cluster_id"] == "0101-abc"
    assert "job_clusters" not in on_cluster
    assert Path("jobs/materialize_source.py").is_file()


def test_airflow_dag_and_crontab_exports(kit: SimpleNamespace) -> None:
    groups = _scheduled(kit)
    settings = ExportSettings(project_root="/srv/features")
    tree = ast.parse(airflow_dag(groups, settings))
    dags = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            call = node.items[0].context_expr
            assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DAG"
            kwargs = {
                k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg != "start_date"
            }
            (task,) = [s.value for s in node.body if isinstance(s, ast.Expr)]
            assert isinstance(task, ast.Call) and getattr(task.func, "id", None) == "BashOperator"
            task_kwargs = {k.arg: ast.literal_eval(k.value) for k in task.keywords}
            dags[kwargs["dag_id"]] = (kwargs, task_kwargs)
    assert set(dags) == {"featurelake_spend_v1", "featurelake_daily_spend_v1"}
    kwargs, task = dags["featurelake_daily_spend_v1"]
    assert kwargs["schedule"] == "30 2 * * 1-5" and kwargs["catchup"] is False
    assert kwargs["max_active_runs"] == 1 and task["cwd"] == "/srv/features"
    command = task["bash_command"]
    assert command.startswith("spark-submit --packages io.delta:delta-spark_2.13:")
    assert "/srv/features/jobs/materialize_source.py --config conf/featurelake.yaml" in command
    assert command.endswith("--group daily_spend@1")

    lines = [line for line in crontab(groups, settings).splitlines() if line[:1] not in ("#", "")]
    assert lines[0] == "CRON_TZ=UTC"
    for line, group in zip(lines[1:], groups, strict=True):
        fields = line.split(" ", 5)
        assert croniter.is_valid(" ".join(fields[:5]))
        assert " ".join(fields[:5]) == group.materialization_schedule
        assert fields[5].startswith("cd /srv/features && spark-submit ")
        assert f"--group {group.name}@1 >> logs/featurelake_{group.name}_v1.log 2>&1" in line


def _load_job(name: str) -> Any:
    path = Path(__file__).resolve().parents[2] / "jobs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"job_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_exports_and_runs_due_groups(
    kit: SimpleNamespace, make_store: Stores, tmp_path: Path
) -> None:
    store = make_store("cli")
    path = kit.silver(kit.rows(range(3)))
    store.register_features(
        kit.group({"table": path, "query": kit.query}, materialization_schedule="0 * * * *")
    )
    store.register_features(kit.group(None, name="unscheduled"))
    config = tmp_path / "featurelake.yaml"
    config.write_text(yaml.safe_dump({"storage_path": store.config.storage_path}))
    runner = CliRunner()

    def cli(*args: str) -> object:
        return runner.invoke(app, ["--config", str(config), *args])

    out = tmp_path / "exported"
    for target, name in (("cron", "featurelake.crontab"), ("airflow", "featurelake_dags.py")):
        result = cli("schedule", "export", "--target", target, "--out", str(out))
        assert result.exit_code == 0, result.output
        assert (out / name).is_file() and "spend@1" in (out / name).read_text()
    result = cli("schedule", "export", "-t", "databricks", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["groups"] == ["spend"]
    missing = cli("schedule", "export", "-t", "cron", "--group", "unscheduled")
    assert missing.exit_code == 2 and "no materialization_schedule" in missing.stderr

    first = cli("schedule", "run", "--once", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["outcome"] == "succeeded"
    again = cli("schedule", "run", "--once")
    assert again.exit_code == 0 and "Nothing due." in again.stdout
    refreshed = cli("refresh", "spend", "--json")
    assert refreshed.exit_code == 0, refreshed.output
    assert json.loads(refreshed.stdout)["mode"] == "up_to_date"
    job = _load_job("materialize_source")
    assert job.main(["--config", str(config), "--group", "spend@1"]) == 0
    runs = store.registry.events(MATERIALIZATION_RUN, "spend@1")
    assert [r["mode"] for r in runs] == ["full", "up_to_date", "up_to_date"]
    assert job.main(["--config", str(config), "--group", "unscheduled"]) == 2  # no source
    not_streaming = cli("stream", "stop", "spend")
    assert not_streaming.exit_code == 2 and "No stream of group 'spend'" in not_streaming.stderr

    # a stream of the declared source, its micro-batch checked in a Spark MERGE (limit 0) ...
    streamed = cli(
        "stream", "start", "spend", "--trigger", "available_now", "--driver-max-rows", "0",
        "--json",
    )  # fmt: skip
    assert streamed.exit_code == 0, streamed.output
    assert '"engine": "spark"' in streamed.stdout and '"rows_written": 3' in streamed.stdout
    # ... and by the job on the driver (the default limit), from a checkpoint of its own
    stream_job = _load_job("stream")
    args = stream_job.build_parser().parse_args(
        ["--group", "spend", "--trigger", "available_now", "--checkpoint", str(tmp_path / "c")]
    )
    summary = stream_job.run(args, store.config, store.spark)
    assert summary["rows_written"] == 3 and summary["engines"] == ["driver+delta-rs"]


def test_a_scheduled_aggregation_group_writes_its_windows_as_of_each_slot(
    make_store: Stores,
) -> None:
    store = make_store()
    store.register_features(
        FeatureGroupSchema(
            "orders",
            ["order_id"],
            [{"name": "customer_id", "type": "bigint"}, {"name": "amount", "type": "double"}],
        )
    )
    daily = FeatureGroupSchema.from_dict(
        {
            "name": "order_windows",
            "entity_keys": ["customer_id"],
            "event_source": "orders",
            "materialization_schedule": "0 * * * *",
            "aggregations": [{"column": "amount", "function": "sum", "windows": ["1d"]}],
        }
    )
    store.register_features(daily)
    slot = datetime(2024, 3, 2, 12)
    orders = [  # order_id, event time, customer, amount
        (1, slot - timedelta(hours=2), 1, 10.0),
        (2, slot - timedelta(hours=25), 1, 99.0),  # older than the 1d window
        (3, slot - timedelta(days=1), 2, 5.0),  # exactly on the window's open edge: out
        (4, slot, 2, 7.0),  # exactly at the slot: in
        (5, slot + timedelta(minutes=10), 2, 1000.0),  # after the slot: never
    ]
    frame = pd.DataFrame(orders, columns=["order_id", "event_timestamp", "customer_id", "amount"])
    store.write_features("orders", frame)

    (ran,) = Scheduler(store, owner="a").run_pending(slot + timedelta(minutes=20))
    assert (ran.slot, ran.outcome) == (slot, "succeeded")
    assert ran.run is not None and ran.run.mode == "windows"
    assert ran.run.source == "group:orders" and ran.run.rows_written == 2
    gold = store.read_table("order_windows").select(
        "customer_id", "event_timestamp", "amount_sum_1d"
    )
    assert sorted(tuple(r) for r in gold.collect()) == [(1, slot, 10.0), (2, slot, 7.0)]
    (recorded,) = store.registry.events(MATERIALIZATION_RUN, "order_windows@1")
    assert recorded["outcome"] == "succeeded" and recorded["slot"] == slot.isoformat()
