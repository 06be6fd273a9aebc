"""`sync-online`: push the latest feature values from the Gold tables to the online store."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from loguru import logger

from featurelake.cli.output import number
from featurelake.cli.state import state_of
from featurelake.config import OnlineBackend
from featurelake.errors import ConfigurationError, MaterializationError
from featurelake.pipeline.sources import parse_time

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]


def parse_since(value: str | None) -> int | Any:
    """A Delta version (a whole number) or a commit time (ISO), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        return parse_time(text)
    except ConfigurationError as error:
        raise typer.BadParameter(
            "give a Delta version (e.g. 12) or a commit time (e.g. 2024-03-01T06:00)",
            param_hint="'--since'",
        ) from error


def sync_online(
    ctx: typer.Context,
    groups: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="GROUP",
            help="GROUP or GROUP@VERSION to sync; every registered group when none is given.",
            show_default=False,
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-read whole tables, not the changes since last sync.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Read changes from this Delta version or commit time (inclusive).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sync the latest values of feature groups into the online store.

    Incremental by default: only the rows changed since the last sync (Delta Change Data Feed).
    Without GROUP, every registered group that has data is synced.

    Needs enable_online_store: true and online_backend: redis, so serving processes see the
    values (an in-memory store would live only as long as this command).
    """
    start = parse_since(since)
    if start is not None and full:
        raise typer.BadParameter("--since and --full exclude each other", param_hint="'--since'")
    state = state_of(ctx)
    out = state.output(as_json)
    config = state.config()
    if not config.enable_online_store:
        raise ConfigurationError(
            f"The online store is not enabled in {state.config_path}.",
            fix="set enable_online_store: true and online_backend: redis (with online_url) in "
            "the config.",
            key="enable_online_store",
        )
    if config.online_backend is OnlineBackend.MEMORY:
        raise ConfigurationError(
            "online_backend is 'memory': values synced by this command would vanish when it exits.",
            fix="set online_backend: redis and online_url in the config (featurelake serve "
            "fills an in-process store from the Gold tables itself, and keeps it fresh).",
            key="online_backend",
        )
    store = state.store(out)
    names = list(groups or [])
    if not names:  # every group that has data
        for schema in store.registry.list_groups():
            try:
                store.read_table(schema)
            except MaterializationError:
                logger.warning("{} has no data yet: not synced", schema.name)
                continue
            names.append(schema.name)
    if not names:
        raise ConfigurationError(
            f"No feature group of {config.storage_path} has data to sync.",
            fix="register groups with featurelake apply and write data with featurelake "
            "materialize.",
        )
    results: list[dict[str, Any]] = []

    def step(name: str) -> str:
        return f"Syncing {name} to the {config.online_backend.value} online store"

    with out.status(step(names[0]), spark=store.spark) as status:
        rows = 0
        for index, name in enumerate(names):
            if index:
                status.step(step(name))
            synced = store.sync_to_online(name, start, full=full)
            rows += synced.rows_written
            status.rows(rows)
            results.append(dataclasses.asdict(synced))
    if out.as_json:
        out.json(results)
        return
    out.table(
        ["group", "version", "mode", "delta versions", "written", "rejected", "deleted", "time"],
        [
            (
                r["group"],
                f"v{r['version']}",
                r["mode"],
                f"{'-' if r['from_version'] is None else r['from_version']} .. {r['to_version']}",
                number(r["rows_written"]),
                number(r["rows_rejected"]),
                number(r["rows_deleted"]),
                f"{r['duration_seconds']:.1f} s",
            )
            for r in results
        ],
        title=f"Synced to {results[0]['target'] if results else config.online_backend.value}",
    )
