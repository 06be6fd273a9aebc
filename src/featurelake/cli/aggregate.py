"""`aggregate`: compute an aggregation group's window values into its Gold table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from featurelake.cli.output import number
from featurelake.cli.state import open_store
from featurelake.errors import ConfigurationError
from featurelake.pipeline.sources import parse_time
from featurelake.pipeline.tasks import write_summary


def aggregate(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="GROUP or GROUP@VERSION.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Values as of this time (ISO, UTC); default now."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Backfill snapshots from this time (ISO, UTC).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Backfill up to this time, excluded.")
    ] = None,
    every: Annotated[str, typer.Option("--every", help="Backfill step (1h, 1d, ...).")] = "1d",
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Write GROUP's windowed aggregations as of one time (or every --every step of
    [--start, --end)) for every entity of its event source, to its Gold table."""
    times = {
        name: _time(value, name)
        for name, value in (("--as-of", as_of), ("--start", start), ("--end", end))
    }
    if (start is None) != (end is None):
        raise typer.BadParameter("give both --start and --end, or neither", param_hint="'--start'")
    if start is not None and as_of is not None:
        raise typer.BadParameter("--as-of is for one snapshot; drop it", param_hint="'--as-of'")
    output, store = open_store(ctx, as_json)
    with output.status(f"Computing the windows of {group}", spark=store.spark):
        first, last = times["--start"], times["--end"]
        if first is not None and last is not None:
            result = store.backfill_aggregations(group, first, last, every)
        else:
            result = store.materialize_aggregations(group, times["--as-of"])
    if as_json:
        output.json(write_summary(result))
        return
    output.line(
        f"{result.group} v{result.version}: {number(result.rows_written)} window rows written "
        f"(Delta version {result.delta_version}, {result.duration_seconds:.1f} s)."
    )


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ConfigurationError as error:
        raise typer.BadParameter(" ".join(str(error).split()), param_hint=f"'{option}'") from None
