"""`materialize`, `backfill`: moving data into the Gold tables."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from featurelake.cli.app import state_of
from featurelake.cli.output import Output, number
from featurelake.errors import ConfigurationError
from featurelake.offline.materialized import WriteMode, WriteResult
from featurelake.pipeline.sources import FORMATS, parse_time
from featurelake.pipeline.tasks import materialize as materialize_task
from featurelake.pipeline.tasks import write_summary

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]


class SourceFormat(StrEnum):
    """How to read --source (the same names as `featurelake.pipeline.sources.FORMATS`)."""

    AUTO = "auto"
    DELTA = "delta"
    PARQUET = "parquet"
    CSV = "csv"
    JSON = "json"
    TABLE = "table"


assert {f.value for f in SourceFormat} == set(FORMATS)

SourceOption = Annotated[
    str,
    typer.Option(
        "--source",
        "-s",
        help="Where the rows are: a Delta/Parquet/CSV/JSON path or a table name.",
        show_default=False,
    ),
]
FormatOption = Annotated[
    SourceFormat,
    typer.Option("--format", help="Format of the source; auto guesses from its shape."),
]
GroupArgument = Annotated[str, typer.Argument(help="GROUP (latest version) or GROUP@VERSION.")]


def _time(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        parse_time(value)
    except ConfigurationError as error:
        raise typer.BadParameter(" ".join(str(error).split()), param_hint=option) from None
    return value


def _report(out: Output, result: WriteResult, source: str) -> None:
    if out.as_json:
        out.json(write_summary(result))
        return
    verb = {"append": "appended", "overwrite": "overwrote the table with", "merge": "merged"}
    out.line(
        f"{result.group} v{result.version}: {verb.get(result.mode, 'backfilled')} "
        f"{number(result.rows_written)} rows from {source} "
        f"(Delta version {result.delta_version}, {result.duration_seconds:.1f} s)."
    )
    out.line(f"The table {result.table} now holds {number(result.row_count)} rows.")


def materialize(
    ctx: typer.Context,
    group: GroupArgument,
    source: SourceOption,
    mode: Annotated[
        WriteMode | None,
        typer.Option(
            "--mode",
            help="append (default), overwrite the whole table, or merge (upsert on keys + time).",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start", help="Backfill from this time (ISO date/time, UTC).", show_default=False
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Backfill up to this time, excluded.", show_default=False),
    ] = None,
    fmt: FormatOption = SourceFormat.AUTO,
    as_json: JsonFlag = False,
) -> None:
    """Validate the source rows against GROUP's schema and write them to its Gold table.

    With --start and --end, only source rows in [start, end) are taken and that range of the
    table is replaced (a backfill).
    """
    _time(start, "'--start'")
    _time(end, "'--end'")
    if (start is None) != (end is None):
        raise typer.BadParameter(
            "give both --start and --end, or neither", param_hint="'--start' / '--end'"
        )
    if start is not None and mode is not None:
        raise typer.BadParameter(
            "a backfill (--start/--end) replaces its time range; drop --mode",
            param_hint="'--mode'",
        )
    _write(ctx, group, source, mode or WriteMode.APPEND, start, end, fmt, as_json, "materialize")


def backfill(
    ctx: typer.Context,
    group: GroupArgument,
    source: SourceOption,
    start: Annotated[
        str,
        typer.Option("--start", help="First event time to replace (ISO, UTC).", show_default=False),
    ],
    end: Annotated[
        str, typer.Option("--end", help="Replace event times before this one.", show_default=False)
    ],
    fmt: FormatOption = SourceFormat.AUTO,
    as_json: JsonFlag = False,
) -> None:
    """Replace GROUP's rows with start <= event time < end by the source rows in that range."""
    _time(start, "'--start'")
    _time(end, "'--end'")
    _write(ctx, group, source, WriteMode.APPEND, start, end, fmt, as_json, "backfill")


def _write(
    ctx: typer.Context,
    group: str,
    source: str,
    mode: WriteMode,
    start: str | None,
    end: str | None,
    fmt: SourceFormat,
    as_json: bool,
    command: str,
) -> None:
    state = state_of(ctx)
    out = state.output(as_json)
    store = state.store(out)
    what = f"Backfilling {group} [{start}, {end})" if start else f"Writing {group} ({mode.value})"
    with out.status(f"{what} from {source}"):
        result = materialize_task(
            store,
            group,
            source,
            mode=mode,
            start=start,
            end=end,
            source_format=fmt.value,
            job=f"featurelake {command}",
        )
    _report(out, result, source)
