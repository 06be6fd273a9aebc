"""`report`: the quality report of a group (HTML with charts, plus JSON for monitoring)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featurelake.cli.state import open_store

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]


def report(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name, or name@version.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the HTML and JSON report.")] = Path(
        "reports"
    ),
    as_json: JsonFlag = False,
) -> None:
    """Write GROUP's quality report: statistics, drift over versions, null rates, freshness."""
    from featurelake.quality.report import write_report

    output, store = open_store(ctx, as_json)
    schema = store.resolve_group(group)
    with output.status(f"Profiling {schema.name} v{schema.version}"):
        html = write_report(store, schema, out, spark=store.spark)
    result = {
        "group": schema.name,
        "version": schema.version,
        "html": str(html),
        "json": str(html.with_suffix(".json")),
    }
    if as_json:
        output.json(result)
    else:
        output.line(f"Quality report of {schema.name} v{schema.version}: {html}")
