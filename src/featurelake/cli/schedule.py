"""`freshness`, `refresh`, `schedule export|run`, `stream start`: keeping groups fresh."""

from __future__ import annotations

from typing import Annotated

import typer

from featurelake.cli.app import state_of
from featurelake.cli.output import ago
from featurelake.schema import format_duration

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

    state = state_of(ctx)
    out = state.output(as_json)
    store = state.store(out)
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
