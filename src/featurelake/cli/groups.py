"""`apply`, `list`, `describe`: feature groups in the registry."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featurelake.cli.output import Output, ago, number, when
from featurelake.cli.state import open_store, state_of
from featurelake.errors import ConfigurationError, SchemaValidationError
from featurelake.registry import group_key
from featurelake.registry.registry import WRITE
from featurelake.schema import FeatureGroupSchema, format_duration, load_groups
from featurelake.times import utc_now

if TYPE_CHECKING:
    from datetime import datetime

    from featurelake.registry import Registry
    from featurelake.serving.store import FeatureStore

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]


@dataclass(frozen=True)
class PlanStep:
    """What `apply` will do to one group version."""

    group: str
    version: int
    action: str  # created | unchanged | updated | incompatible
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_step(registry: Registry, schema: FeatureGroupSchema) -> PlanStep:
    """The registry's plan for `schema`, with a short description of the change."""
    try:
        action = registry.plan_registration(schema)
    except SchemaValidationError as error:
        return PlanStep(schema.name, schema.version, "incompatible", error.message, error.fix)
    if action == "created":
        detail = f"{len(schema.features)} features, keyed by {', '.join(schema.entity_keys)}"
        older = [v for v in registry.versions(schema.name) if v != schema.version]
        if older:
            detail += f"; v{', v'.join(map(str, older))} stay readable"
    elif action == "updated":
        detail = describe_change(registry.get_group(schema.name, schema.version), schema)
    else:
        detail = ""
    return PlanStep(schema.name, schema.version, action, detail)


def describe_change(old: FeatureGroupSchema, new: FeatureGroupSchema) -> str:
    """`adds x, y; updates z; description changed` for a compatible change."""
    parts = []
    added = [f for f in new.feature_names if f not in old.feature_names]
    if added:
        parts.append("adds " + ", ".join(added))
    old_features = {f.name: f.to_dict() for f in old.features}
    updated = [
        f.name
        for f in new.features
        if f.name in old_features and old_features[f.name] != f.to_dict()
    ]
    if updated:
        parts.append("updates " + ", ".join(updated))
    old_dict, new_dict = old.to_dict(), new.to_dict()
    changed = [
        key
        for key in sorted(set(old_dict) | set(new_dict))
        if key != "features" and old_dict.get(key) != new_dict.get(key)
    ]
    if changed:
        parts.append(", ".join(changed) + " changed")
    return "; ".join(parts) or "metadata changed"


def apply(
    ctx: typer.Context,
    features: Annotated[
        Path | None,
        typer.Option(
            "--features",
            help="Folder of feature group YAML files. Default: features/ beside the config.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan only; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register every feature group of conf/features/, showing the plan first.

    Each group version is created, unchanged, updated (a compatible change, such as a new
    nullable feature) or incompatible (needs a version bump). Nothing is applied while any
    group is incompatible.
    """
    state = state_of(ctx)
    out = state.output(as_json)
    folder = features or state.config_path.parent / "features"
    schemas = load_groups(folder)
    if not schemas:
        raise ConfigurationError(
            f"There are no feature group files (*.yaml) in {folder}.",
            fix="add one (featurelake init writes an example) or pass --features DIR.",
        )
    store = state.store(out)
    with out.status(f"Planning {len(schemas)} feature group(s)"):
        plan = [plan_step(store.registry, schema) for schema in schemas]
    out.table(
        ["group", "version", "action", "change"],
        [(p.group, f"v{p.version}", _styled(p.action), p.detail) for p in plan],
        title=f"Plan for {folder}",
    )
    blocked = [p for p in plan if p.action == "incompatible"]
    if blocked:
        if out.as_json:
            out.json({"plan": [p.to_dict() for p in plan], "applied": False})
        names = ", ".join(f"{p.group} v{p.version}" for p in blocked)
        raise SchemaValidationError(
            f"Nothing was applied: {names} cannot change in place ({blocked[0].detail})",
            fix=blocked[0].fix,
        )
    changes = [p for p in plan if p.action in ("created", "updated")]
    if not dry_run:
        with out.status(f"Registering {len(changes)} group version(s)"):
            for schema, step in zip(schemas, plan, strict=True):
                if step in changes:
                    store.register_features(schema)
    counts = {a: sum(p.action == a for p in plan) for a in ("created", "updated", "unchanged")}
    if out.as_json:
        out.json({"plan": [p.to_dict() for p in plan], "applied": not dry_run})
        return
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    if dry_run:
        out.line(f"Dry run: would apply {summary}. Nothing was changed.")
    elif changes:
        out.line(f"Applied: {summary}.")
    else:
        out.line(f"Nothing to change: {summary}.")


def _styled(action: str) -> str:
    return action.upper() if action == "incompatible" else action


def _last_writes(registry: Registry) -> dict[str, dict[str, Any]]:
    """The latest write event per group version key (one registry read)."""
    latest: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for event in registry.events(WRITE):
        latest[event["key"]] = event
        counts[event["key"]] = counts.get(event["key"], 0) + 1
    for key, event in latest.items():
        event["writes"] = counts[key]
    return latest


def list_groups(
    ctx: typer.Context,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="One row per version, not per group.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the registered feature groups with their row counts and last update."""
    out, store = open_store(ctx, as_json)
    registry = store.registry
    schemas = registry.list_groups(all_versions=all_versions)
    writes = _last_writes(registry)
    rows: list[dict[str, Any]] = []
    for schema in schemas:
        last = writes.get(group_key(schema.name, schema.version), {})
        rows.append(
            {
                "group": schema.name,
                "version": schema.version,
                "versions": registry.versions(schema.name),
                "entity_keys": list(schema.entity_keys),
                "features": len(schema.features),
                "rows": last.get("row_count"),
                "last_updated": last.get("recorded_at"),
                "owner": schema.owner,
                "description": schema.description,
            }
        )
    if out.as_json:
        out.json(rows)
        return
    if not rows:
        out.line(
            f"No feature groups are registered in {store.config.storage_path}. "
            "Register some with: featurelake apply"
        )
        return
    out.table(
        ["group", "version", "keys", "features", "rows", "last updated (UTC)"],
        [
            (
                r["group"],
                f"v{r['version']}"
                + (f" (of {', '.join(map(str, r['versions']))})" if len(r["versions"]) > 1 else ""),
                ", ".join(r["entity_keys"]),
                r["features"],
                number(r["rows"]),
                when(r["last_updated"], short=True),
            )
            for r in rows
        ],
        title=f"Feature groups in {store.config.storage_path}",
    )


def describe(
    ctx: typer.Context,
    group: Annotated[
        str, typer.Argument(metavar="GROUP", help="GROUP (latest version) or GROUP@VERSION.")
    ],
    lineage_limit: Annotated[
        int, typer.Option("--lineage", help="How many lineage records to show.", min=0)
    ] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Show a group: schema, versions, row counts, last update, lineage and freshness."""
    out, store = open_store(ctx, as_json)
    registry = store.registry
    schema = store.resolve_group(group)
    writes = _last_writes(registry)
    versions = []
    for version in registry.versions(schema.name):
        last = writes.get(group_key(schema.name, version), {})
        versions.append(
            {
                "version": version,
                "rows": last.get("row_count"),
                "delta_version": last.get("delta_version"),
                "last_updated": last.get("recorded_at"),
                "last_mode": last.get("mode"),
                "writes": last.get("writes", 0),
            }
        )
    current = next(v for v in versions if v["version"] == schema.version)
    lineage = registry.group_state(schema.name, schema.version).lineage
    freshness = _freshness(store, schema, current["last_updated"])
    table = str(store.location(schema))
    if out.as_json:
        out.json(
            {
                "group": schema.name,
                "version": schema.version,
                "schema": schema.to_dict(),
                "table": table,
                "versions": versions,
                "freshness": freshness,
                "lineage": lineage[-lineage_limit:] if lineage_limit else [],
            }
        )
        return
    _render_group(out, schema, table)
    out.table(
        ["version", "rows", "delta version", "last write", "mode", "writes"],
        [
            (
                f"v{v['version']}" + (" *" if v["version"] == schema.version else ""),
                number(v["rows"]),
                v["delta_version"],
                when(v["last_updated"]),
                v["last_mode"],
                v["writes"],
            )
            for v in versions
        ],
        title="Versions (* shown above)",
    )
    out.line(f"Freshness: {freshness['status']} - {freshness['summary']}")
    if lineage and lineage_limit:
        out.table(
            ["recorded", "delta version", "job", "sources"],
            [
                (
                    when(item.get("recorded_at")),
                    item.get("delta_version"),
                    item.get("job"),
                    ", ".join(item.get("sources") or []) or "-",
                )
                for item in lineage[-lineage_limit:]
            ],
            title="Lineage (latest last)",
        )


def _render_group(out: Output, schema: FeatureGroupSchema, table: str) -> None:
    out.line(f"[bold]{schema.name}[/bold] v{schema.version}", markup=True)
    if schema.description:
        out.line(schema.description)
    key_types = {k: t.simple_string() for k, t in schema.entity_key_types.items()}
    keys = ", ".join(f"{k} ({key_types[k]})" if k in key_types else k for k in schema.entity_keys)
    facts = [
        ("entity keys", keys),
        ("event time", schema.timestamp_key),
        ("ttl", format_duration(schema.ttl) if schema.ttl else "none"),
        ("freshness target", format_duration(schema.freshness) if schema.freshness else "none"),
        ("owner", schema.owner or "-"),
        ("tags", ", ".join(f"{k}={v}" if v else k for k, v in schema.tags.items()) or "-"),
        ("table", table),
    ]
    for label, value in facts:
        out.line(f"  {label + ':':<18}{value}")
    out.table(
        ["feature", "type", "kind", "nullable", "limits", "unit", "description"],
        [
            (
                f.name,
                f.data_type.simple_string(),
                f.feature_type.value,
                "yes" if f.nullable else "no",
                _limits(f.min_value, f.max_value, f.allowed_values),
                f.unit or "",
                f.description,
            )
            for f in schema.features
        ],
        title="Features",
    )


def _limits(low: float | None, high: float | None, allowed: tuple[Any, ...] | None) -> str:
    if allowed is not None:
        return "one of " + ", ".join(map(str, allowed))
    if low is not None and high is not None:
        return f"{low:g} .. {high:g}"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return ""


def _freshness(
    store: FeatureStore, schema: FeatureGroupSchema, last_updated: datetime | None
) -> dict[str, Any]:
    """Age of the last write against the group's freshness target, and the newest event time."""
    if last_updated is None:
        return {
            "status": "no data",
            "summary": f"nothing written yet (featurelake materialize {schema.name} --source ...)",
            "last_updated": None,
            "latest_event": None,
            "target_seconds": schema.freshness.total_seconds() if schema.freshness else None,
        }
    from pyspark.sql import functions as F

    row = store.read_table(schema).agg(F.max(schema.timestamp_key)).first()
    latest_event = row[0] if row is not None else None
    age = utc_now() - last_updated
    if schema.freshness is None:
        status = "no target"
    else:
        status = "fresh" if age <= schema.freshness else "stale"
    target = f"target {format_duration(schema.freshness)}" if schema.freshness else "no target set"
    return {
        "status": status,
        "summary": f"last write {ago(age)} ({target}); newest event {latest_event}",
        "last_updated": last_updated,
        "latest_event": latest_event,
        "age_seconds": round(age.total_seconds(), 1),
        "target_seconds": schema.freshness.total_seconds() if schema.freshness else None,
    }
