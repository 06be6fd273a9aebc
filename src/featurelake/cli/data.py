"""`materialize`, `backfill`: moving data into the Gold tables."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from featurelake.cli.output import Output, number
from featurelake.cli.state import open_store
from featurelake.errors import ConfigurationError
from featurelake.pipeline.sources import FORMATS, parse_time
from featurelake.pipeline.tasks import materialize as materialize_task
from featurelake.pipeline.tasks import write_summary
from featurelake.stores.materialized import WriteMode, WriteResult

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
GroupArgument = Annotated[
    str, typer.Argument(metavar="GROUP", help="GROUP (latest version) or GROUP@VERSION.")
]


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
    out, store = open_store(ctx, as_json)
    what = f"Backfilling {group} [{start}, {end})" if start else f"Writing {group} ({mode.value})"
    with out.status(f"{what} from {source}", spark=store.spark):
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


class OutputFormat(StrEnum):
    """How to write a training set (the names of `featurelake.pipeline.sources.OUTPUT_FORMATS`)."""

    PARQUET = "parquet"
    DELTA = "delta"
    CSV = "csv"
    TABLE = "table"


class FillMode(StrEnum):
    """Which value a point-in-time read takes when the latest event holds a null."""

    NONE = "none"
    LAST_NON_NULL = "last_non_null"


def training_set(
    ctx: typer.Context,
    entities: Annotated[
        str,
        typer.Option(
            "--entities",
            "-e",
            help="Entity rows (keys + event time): a Parquet/CSV/Delta path or a table.",
            show_default=False,
        ),
    ],
    features: Annotated[
        list[str],
        typer.Option(
            "--features",
            "-f",
            help="Feature refs: group.feature, group.*, group@2.feature (repeat or use commas).",
            show_default=False,
        ),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Where to write the set.", show_default=False)
    ],
    out_format: Annotated[OutputFormat, typer.Option("--out-format")] = OutputFormat.PARQUET,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="Max age of a value, e.g. 7d (default: each group's ttl)."),
    ] = None,
    timestamp_column: Annotated[
        str | None,
        typer.Option("--timestamp-column", help="Event time column of the entity rows."),
    ] = None,
    fill: Annotated[FillMode, typer.Option("--fill")] = FillMode.NONE,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Keep the manifest in the store under this name."),
    ] = None,
    entities_format: Annotated[
        SourceFormat, typer.Option("--entities-format", help="Format of --entities.")
    ] = SourceFormat.AUTO,
    as_json: JsonFlag = False,
) -> None:
    """Build a point-in-time-correct training set and write it, with its manifest.

    Every entity row gets each feature's latest value at or before its own event time, read
    from one Delta version per group; the manifest records those versions.
    """
    from featurelake.pipeline.tasks import feature_ref_list
    from featurelake.pipeline.tasks import training_set as training_set_task

    refs = feature_ref_list(features)
    out_, store = open_store(ctx, as_json)
    with out_.status(f"Joining {len(refs)} feature ref(s) onto {entities}", spark=store.spark):
        result = training_set_task(
            store,
            entities,
            refs,
            out,
            out_format=out_format.value,
            overwrite=overwrite,
            ttl=ttl,
            timestamp_column=timestamp_column,
            fill=fill.value,
            name=name,
            entities_format=entities_format.value,
        )
    if out_.as_json:
        out_.json(result.to_dict())
        return
    out_.line(
        f"Wrote {number(result.rows)} rows x {len(result.columns)} columns to {result.output} "
        f"({result.format})."
    )
    out_.table(
        ["group", "version", "delta version read", "table"],
        [
            (t.group, f"v{t.group_version}", t.delta_version, t.table)
            for t in result.manifest.tables
        ],
        title="Read (the manifest pins these versions)",
    )
    if name:
        out_.line(f"Manifest saved as '{name}': rebuild it exactly with store.rebuild('{name}').")
