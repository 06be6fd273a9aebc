"""Ready-to-use definitions of every scheduled group for an orchestrator.

`databricks`: one Jobs API 2.1 `jobs/create` payload per group (a `spark_python_task` over
`jobs/materialize_source.py`, the group's cron as a Quartz schedule, one run at a time).
`airflow`: one DAG file, a DAG per group running the job with spark-submit (no catch-up of
every missed slot: the job reads all changes since the last run anyway).
`cron`: crontab lines running the same spark-submit command. All times are UTC.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from featurelake.errors import ConfigurationError
from featurelake.scheduling.schedules import to_quartz
from featurelake.schema import FeatureGroupSchema

TARGETS = ("databricks", "airflow", "cron")
JOB_FILE = "jobs/materialize_source.py"


def _delta_packages() -> str:
    try:
        version = metadata.version("delta-spark")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency of featurelake
        version = "4.0.1"
    return f"io.delta:delta-spark_2.13:{version}"


def default_spark_args() -> tuple[str, ...]:
    """What spark-submit needs for Delta outside Databricks."""
    return (
        "--packages",
        _delta_packages(),
        "--conf",
        "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf",
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
    )


@dataclass(frozen=True)
class ExportSettings:
    """Where the project lives on the machine that runs the jobs, and how to start Spark.

    `project_root`: the folder holding `jobs/` (for Databricks: a workspace or repo path such
    as `/Workspace/Repos/me/features`). `config_path`: the store config, relative to it or
    absolute. Databricks runs on `cluster_id` when given, else on a job cluster of
    `num_workers` `node_type_id` nodes with `spark_version`, installing `library`.
    """

    project_root: str = "."
    config_path: str = "conf/featurelake.yaml"
    spark_submit: str = "spark-submit"
    spark_args: tuple[str, ...] = field(default_factory=default_spark_args)
    log_dir: str = "logs"
    cluster_id: str | None = None
    spark_version: str = "17.3.x-scala2.13"
    node_type_id: str = "i3.xlarge"
    num_workers: int = 1
    library: str = "featurelake"


def job_name(schema: FeatureGroupSchema) -> str:
    return f"featurelake_{schema.name}_v{schema.version}"


def job_arguments(schema: FeatureGroupSchema, settings: ExportSettings) -> list[str]:
    return ["--config", settings.config_path, "--group", f"{schema.name}@{schema.version}"]


def _job_path(settings: ExportSettings) -> str:
    return f"{settings.project_root.rstrip('/')}/{JOB_FILE}"


def spark_submit_command(schema: FeatureGroupSchema, settings: ExportSettings) -> str:
    """The shell command that materializes one group (quoted for sh)."""
    parts = [
        settings.spark_submit,
        *settings.spark_args,
        _job_path(settings),
        *job_arguments(schema, settings),
    ]
    return " ".join(shlex.quote(p) for p in parts)


def _schedule(schema: FeatureGroupSchema) -> str:
    if schema.materialization_schedule is None:
        raise ConfigurationError(
            f"Group '{schema.name}' v{schema.version} has no materialization_schedule.",
            fix="add one to its YAML (e.g. '0 * * * *') and run featurelake apply.",
        )
    return schema.materialization_schedule


def databricks_job(schema: FeatureGroupSchema, settings: ExportSettings) -> dict[str, Any]:
    """A Jobs API 2.1 `jobs/create` payload for one group."""
    task: dict[str, Any] = {
        "task_key": "materialize",
        "description": f"Materialize {schema.name} v{schema.version} from its source",
        "spark_python_task": {
            "python_file": _job_path(settings),
            # a task's working folder is not the project: a relative config path is made
            # absolute under project_root
            "parameters": job_arguments(
                schema,
                replace(
                    settings,
                    config_path=posixpath.join(settings.project_root, settings.config_path),
                ),
            ),
        },
        "libraries": [{"pypi": {"package": settings.library}}],
        "max_retries": 1,
        "timeout_seconds": 0,
    }
    job: dict[str, Any] = {
        "name": job_name(schema),
        "tags": {"featurelake_group": schema.name, "featurelake_version": str(schema.version)},
        "schedule": {
            "quartz_cron_expression": to_quartz(_schedule(schema)),
            "timezone_id": "UTC",
            "pause_status": "UNPAUSED",
        },
        "max_concurrent_runs": 1,
        "tasks": [task],
    }
    if settings.cluster_id:
        task["existing_cluster_id"] = settings.cluster_id
    else:
        task["job_cluster_key"] = "featurelake"
        job["job_clusters"] = [
            {
                "job_cluster_key": "featurelake",
                "new_cluster": {
                    "spark_version": settings.spark_version,
                    "node_type_id": settings.node_type_id,
                    "num_workers": settings.num_workers,
                },
            }
        ]
    return job


def airflow_dag(groups: Sequence[FeatureGroupSchema], settings: ExportSettings) -> str:
    """The text of one Airflow DAG file with a DAG per group (Airflow 2.4+ and 3)."""
    lines = [
        '"""featurelake schedules: one DAG per scheduled feature group (times in UTC).',
        "",
        "Written by `featurelake schedule export --target airflow`; each DAG runs",
        f"{JOB_FILE} with spark-submit, one run at a time, without catching up every",
        'missed slot (a run reads all changes since the last one)."""',
        "",
        "from datetime import datetime",
        "",
        "from airflow import DAG",
        "",
        "try:  # Airflow 3",
        "    from airflow.providers.standard.operators.bash import BashOperator",
        "except ImportError:  # Airflow 2",
        "    from airflow.operators.bash import BashOperator",
        "",
    ]
    for schema in groups:
        name = job_name(schema)
        lines += [
            "",
            "with DAG(",
            f"    dag_id={name!r},",
            f"    schedule={_schedule(schema)!r},",
            "    start_date=datetime(2024, 1, 1),",
            "    catchup=False,",
            "    max_active_runs=1,",
            f"    tags=['featurelake', {schema.name!r}],",
            f") as {name}:",
            "    BashOperator(",
            "        task_id='materialize',",
            f"        bash_command={spark_submit_command(schema, settings)!r},",
            f"        cwd={settings.project_root!r},",
            "    )",
        ]
    return "\n".join(lines) + "\n"


def crontab(groups: Sequence[FeatureGroupSchema], settings: ExportSettings) -> str:
    """Crontab lines (UTC), each running one group's job and appending to its log."""
    root = shlex.quote(settings.project_root)
    lines = [
        "# featurelake schedules: written by `featurelake schedule export --target cron`",
        "CRON_TZ=UTC",
    ]
    for schema in groups:
        log = shlex.quote(f"{settings.log_dir.rstrip('/')}/{job_name(schema)}.log")
        command = spark_submit_command(schema, settings)
        lines.append(f"{_schedule(schema)} cd {root} && {command} >> {log} 2>&1")
    return "\n".join(lines) + "\n"


def export(
    target: str,
    groups: Sequence[FeatureGroupSchema],
    out_dir: str | Path,
    settings: ExportSettings | None = None,
) -> list[Path]:
    """Write the definitions for `target` into `out_dir`; return the files written."""
    chosen = settings or ExportSettings()
    if target not in TARGETS:
        raise ConfigurationError(
            f"The export target '{target}' is unknown.", fix=f"use one of: {', '.join(TARGETS)}."
        )
    if not groups:
        raise ConfigurationError(
            "No registered group declares a materialization_schedule, so there is nothing to "
            "export.",
            fix="add 'materialization_schedule' and 'source' to a group's YAML and run "
            "featurelake apply.",
        )
    folder = Path(out_dir)
    files: dict[str, str] = {}  # everything is built (and checked) before anything is written
    if target == "databricks":
        for schema in groups:
            files[f"{job_name(schema)}.json"] = json.dumps(databricks_job(schema, chosen), indent=2)
    elif target == "airflow":
        files["featurelake_dags.py"] = airflow_dag(groups, chosen)
    else:
        files["featurelake.crontab"] = crontab(groups, chosen)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        written.append(path)
    return written
