"""`freshness`, `refresh`, `schedule export|run`, `stream start`: keeping groups fresh."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featurelake.cli.output import ago
from featurelake.cli.state import open_store, state_of
from featurelake.schema import format_duration

if TYPE_CHECKING:
    from featurelake.registry import Registry

EXIT_STALE = 3
"""`featurelake freshness` exits 3 when a group is stale (1 stays 'the command failed')."""

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]
GroupsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[GROUP]...", help="Groups (name or name@version); default: every group."
    ),
]


def freshness(ctx: typer.Context, groups: GroupsArgument = None, as_json: JsonFlag = False) -> int:
    """Age of each group's newest event and last materialization against its `freshness`.

    Exits 3 when a group is stale, so a scheduler can alert on it.
    """
    from featurelake.quality.freshness import group_freshness

    out, store = open_store(ctx, as_json)
    schemas = [store.resolve_group(g) for g in groups] if groups else store.registry.list_groups()
    results = [group_freshness(store.registry, s, spark=store.spark) for s in schemas]
    if out.as_json:
        out.json(
            {
                "groups": [r.to_dict() for r in results],
                "stale": [r.group for r in results if r.stale],
            }
        )
    else:
        out.table(
            ["group", "status", "newest event", "last materialized", "limit", "why"],
            [
                [
                    f"{r.group} v{r.version}",
                    r.status,
                    ago(r.event_age) if r.event_age is not None else None,
                    ago(r.materialization_age) if r.materialization_age is not None else None,
                    format_duration(r.max_age) if r.max_age else None,
                    "; ".join(r.stale_reasons) or None,
                ]
                for r in results
            ],
        )
    return EXIT_STALE if any(r.stale for r in results) else 0


def refresh(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="GROUP or GROUP@VERSION.")],
    full: Annotated[
        bool, typer.Option("--full", help="Recompute the whole table from the source.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Materialize GROUP from its declared source now: only the source's changes since the
    last run (Change Data Feed), or everything with --full or on the first run."""
    from featurelake.scheduling import materialize_from_source

    out, store = open_store(ctx, as_json)
    with out.status(f"Materializing {group} from its source", spark=store.spark):
        run = materialize_from_source(store, group, full=full, job="featurelake refresh")
    if out.as_json:
        out.json(run.to_dict())
        return
    span = (
        "" if run.to_version is None else f" (source versions {run.from_version}..{run.to_version})"
    )
    out.line(
        f"{run.group} v{run.version}: {run.mode}{span}, {run.rows_written:,} rows written, "
        f"Gold version {run.gold_version if run.gold_version is not None else 'unchanged'}, "
        f"{run.duration_seconds:.1f} s."
    )


schedule_app = typer.Typer(
    help="Scheduled materialization: export to an orchestrator, or run a local scheduler.",
    no_args_is_help=True,
)


class Target(StrEnum):
    DATABRICKS = "databricks"
    AIRFLOW = "airflow"
    CRON = "cron"


@schedule_app.command("export")
def export(
    ctx: typer.Context,
    target: Annotated[Target, typer.Option("--target", "-t", help="What to write.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path("schedules"),
    project_root: Annotated[
        str,
        typer.Option(
            "--project-root",
            help="Folder holding jobs/ where the jobs run (Databricks: a workspace/repo path).",
        ),
    ] = ".",
    config_path: Annotated[
        str, typer.Option("--config-path", help="The store config as the jobs see it.")
    ] = "conf/featurelake.yaml",
    cluster_id: Annotated[
        str | None,
        typer.Option(
            "--cluster-id", help="Databricks: run on this cluster (default: a job cluster)."
        ),
    ] = None,
    groups: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Only this group; repeatable.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write Databricks Jobs JSON, an Airflow DAG file or crontab lines for every scheduled
    group (times in UTC)."""
    from featurelake.scheduling.export import ExportSettings
    from featurelake.scheduling.export import export as write_export
    from featurelake.scheduling.schedules import scheduled_groups

    state = state_of(ctx)
    output = state.output(as_json)
    registry = _registry(state)
    chosen = scheduled_groups(registry, groups)
    settings = ExportSettings(
        project_root=project_root, config_path=config_path, cluster_id=cluster_id
    )
    files = write_export(target.value, chosen, out, settings)
    if output.as_json:
        output.json({"target": target.value, "files": files, "groups": [g.name for g in chosen]})
        return
    for path in files:
        output.line(f"wrote {path}")
    output.line(f"{len(chosen)} scheduled group(s): {', '.join(g.name for g in chosen)}")


@schedule_app.command("run")
def run(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Run what is due now, then exit (for cron).")
    ] = False,
    groups: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Only this group; repeatable.")
    ] = None,
    poll_seconds: Annotated[
        float, typer.Option("--poll-seconds", help="Longest sleep between two looks.")
    ] = 30.0,
    as_json: JsonFlag = False,
) -> int:
    """Run scheduled groups when their cron slot comes, recording each run in the registry.

    Several schedulers may run on one store: each slot runs once. After downtime the latest
    missed slot runs once. Stop with Ctrl-C. Exits 1 if a run failed (with --once).
    """
    from featurelake.scheduling.runner import FAILED, Scheduler, SlotRun

    state = state_of(ctx)
    output = state.output(as_json)
    scheduler = Scheduler(state.store(output), groups)

    def show(result: SlotRun) -> None:
        if output.as_json:
            output.json(
                {
                    "group": result.group,
                    "version": result.version,
                    "slot": result.slot,
                    "outcome": result.outcome,
                    "error": result.error,
                    "run": result.run.to_dict() if result.run else None,
                }
            )
            return
        detail = result.error or (
            f"{result.run.mode}, {result.run.rows_written:,} rows" if result.run else ""
        )
        output.line(f"{result.slot:%Y-%m-%d %H:%M} {result.group}: {result.outcome} {detail}")

    if once:
        results = scheduler.run_pending()
        for result in results:
            show(result)
        if not results and not output.as_json:
            output.line("Nothing due.")
        return 1 if any(r.outcome == FAILED for r in results) else 0
    output.line(f"Scheduler {scheduler.owner} running; Ctrl-C stops it.")
    try:
        scheduler.run_forever(poll_seconds=poll_seconds, on_run=show)
    except KeyboardInterrupt:
        output.line("Stopped.")
    return 0


def _registry(state: Any) -> Registry:
    from featurelake.registry import Registry

    return Registry(state.config())


stream_app = typer.Typer(
    help="Structured Streaming into a group: start (in this process) and stop.",
    no_args_is_help=True,
)


@stream_app.command("start")
def stream_start(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="GROUP or GROUP@VERSION.")],
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Delta path or table (default: the declared one)."),
    ] = None,
    trigger: Annotated[
        str,
        typer.Option(
            "--trigger",
            help="'available_now' (process what is there, then stop) or an "
            "interval such as '10 seconds'.",
        ),
    ] = "10 seconds",
    source_format: Annotated[
        str, typer.Option("--format", help="delta, kafka, or another streaming source.")
    ] = "delta",
    options: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", metavar="KEY=VALUE", help="Reader option; repeatable."),
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Checkpoint folder (default: in the store).")
    ] = None,
    driver_max_rows: Annotated[
        int | None,
        typer.Option(
            "--driver-max-rows",
            min=0,
            help="Micro-batches of up to this many rows are checked on the driver and pushed "
            "online during their Gold MERGE; larger ones are checked in a Spark MERGE "
            "(0: always so; default 100,000).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Stream a source into GROUP until it ends, `featurelake stream stop GROUP`, or Ctrl-C.

    Each micro-batch is validated, merged into Gold and pushed online when the online store
    is enabled; a restart resumes from the checkpoint without losing or repeating rows.
    """
    from featurelake.pipeline.runtime import parse_spark_conf
    from featurelake.scheduling.stream_driver import DRIVER_MAX_ROWS
    from featurelake.scheduling.streaming import StreamBatch, start_stream

    out, store = open_store(ctx, as_json)

    def show(batch: StreamBatch) -> None:
        if out.as_json:
            out.json(batch)
        else:
            out.line(
                f"batch {batch.batch_id}: {batch.rows_written:,} rows, Gold version "
                f"{batch.gold_version}, {batch.online_written:,} online, "
                f"{batch.duration_seconds:.1f} s"
            )

    stream = start_stream(
        store,
        group,
        source,
        trigger=trigger,
        source_format=source_format,
        options=parse_spark_conf(options or []),
        checkpoint=checkpoint,
        on_batch=show,
        driver_max_rows=DRIVER_MAX_ROWS if driver_max_rows is None else driver_max_rows,
    )
    out.line(
        f"Streaming into {stream.schema.name} v{stream.schema.version} "
        f"(checkpoint {stream.checkpoint}); Ctrl-C stops it."
    )
    try:
        stream.await_termination()
    except KeyboardInterrupt:
        stream.stop()
    out.line(f"Stopped after {len(stream.batches)} batch(es).")


@stream_app.command("stop")
def stream_stop(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="GROUP or GROUP@VERSION.")],
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="The stream's checkpoint, if not default.")
    ] = None,
) -> None:
    """Ask the stream of GROUP running on this (local) store to stop after its current batch."""
    from featurelake.scheduling.streaming import request_stop
    from featurelake.serving.store import FeatureStore

    state = state_of(ctx)
    out = state.output()
    config = state.config()
    store = FeatureStore(config, registry=_registry(state))
    marker = request_stop(store, group, checkpoint)
    out.line(f"Stop requested ({marker}); the stream ends after its current micro-batch.")
