"""What the catalog pages show, read from the registry and filtered by one API key's rights.

A `Catalog` reads the registry's objects (cached) and the history events it needs in bulk (one
delta-rs read per kind, not one per group), so a list of hundreds of groups costs a few table
reads. Every method returns only what the key may read: groups with no readable feature do not
exist for it, only readable features are named, and definitions that derive or check features
(sources, queries, aggregations, composites, whole-group checks) are shown only to a key that
reads every feature of the group, as in `GET /v1/features/{group}`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from featurelake.engines.spark.training import TRAINING_SET
from featurelake.online.sync import SYNC_KIND
from featurelake.quality.checks import CHECKS
from featurelake.quality.drift import DRIFT, DriftReport
from featurelake.quality.freshness import MATERIALIZATION_RUN, NO_TARGET, GroupFreshness
from featurelake.quality.stats import STATS, GroupStatistics
from featurelake.registry import Registry
from featurelake.registry.registry import GROUP, LINEAGE, WRITE, group_key
from featurelake.schema import FeatureGroupSchema, FeatureRef
from featurelake.server.auth import Access, ApiKey
from featurelake.serving.service import SERVICE_KIND
from featurelake.stores.hybrid import ROUTER_METRICS
from featurelake.virtual.definitions import VIRTUAL

NEVER = "never materialized"
FRESHNESS_STATES = ("fresh", "stale", NEVER, NO_TARGET)


def _time(value: Any) -> datetime | None:
    """Naive UTC datetime of a stored time (datetime or ISO text)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@dataclass(frozen=True)
class GroupRow:
    """One line of the search page."""

    name: str
    version: int
    entity_keys: tuple[str, ...]
    features: tuple[str, ...]
    description: str
    owner: str | None
    tags: dict[str, str]
    rows: int | None
    last_materialized: datetime | None
    age_seconds: float | None
    freshness: str
    check: bool | None
    virtual: bool


@dataclass
class GroupPage:
    """Everything the group page shows (already filtered for the key)."""

    schema: FeatureGroupSchema
    row: GroupRow
    versions: list[int]
    reads_all: bool
    features: list[Any]
    statistics: dict[int | None, GroupStatistics]
    drifts: list[DriftReport]
    check: dict[str, Any] | None
    writes: list[dict[str, Any]]
    sync: dict[str, Any] | None
    decisions: list[dict[str, Any]]
    virtual: dict[str, Any] | None
    upstream: list[tuple[str, str]] = field(default_factory=list)
    downstream: list[tuple[str, str]] = field(default_factory=list)


class CatalogCache:
    """What every page reads, kept between requests: parsed schemas (parsed again only when
    their registry payload changes) and history events by kind (kept as long as the
    registry's own `metadata_cache_ttl_seconds`)."""

    def __init__(self) -> None:
        self._schemas: dict[str, tuple[str, FeatureGroupSchema]] = {}
        self._events: dict[str, tuple[float, dict[str, list[dict[str, Any]]]]] = {}
        self._lock = threading.Lock()

    def schemas(self, registry: Registry) -> list[FeatureGroupSchema]:
        """The latest version of every registered group, by name (as `list_groups`)."""
        latest: dict[str, tuple[int, str, dict[str, Any]]] = {}
        for key, payload in registry.list_objects(GROUP).items():
            name, version = str(payload["name"]), int(payload["version"])
            if name not in latest or version > latest[name][0]:
                latest[name] = (version, key, payload)
        out = []
        with self._lock:
            for name in sorted(latest):
                _, key, payload = latest[name]
                stamp = f"{payload.get('fingerprint')}|{payload.get('updated_at')}"
                cached = self._schemas.get(key)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, FeatureGroupSchema.from_dict(payload["schema"]))
                    self._schemas[key] = cached
                out.append(cached[1])
        return out

    def events(self, registry: Registry, kind: str) -> dict[str, list[dict[str, Any]]]:
        """Events of one kind by `group@version`, oldest first."""
        ttl = registry.config.metadata_cache_ttl_seconds
        with self._lock:
            cached = self._events.get(kind)
            if cached is not None and time.monotonic() - cached[0] <= ttl:
                return cached[1]
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in registry.events(kind):
            by_key[str(event.get("key"))].append(event)
        found = dict(by_key)
        with self._lock:
            self._events[kind] = (time.monotonic(), found)
        return found


class Catalog:
    """The registry as one API key may see it."""

    def __init__(
        self,
        registry: Registry,
        key: ApiKey,
        now: datetime | None = None,
        cache: CatalogCache | None = None,
    ) -> None:
        self.registry = registry
        self.key = key
        self.now = now or datetime.now(UTC).replace(tzinfo=None)
        self.cache = cache or CatalogCache()
        self._events: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._groups: list[FeatureGroupSchema] | None = None
        self._readable: dict[tuple[str, int], tuple[list[str], int]] = {}

    # -- rights ---------------------------------------------------------------------------------

    def readable(self, schema: FeatureGroupSchema) -> list[str]:
        """The features of `schema` this key may read, in schema order."""
        key = (schema.name, schema.version)
        found = self._readable.get(key)
        if found is None:
            names = schema.feature_names
            found = self._readable[key] = (
                [f for f in names if self.key.can(Access.READ, schema.name, f)],
                len(names),
            )
        return found[0]

    def reads_all(self, schema: FeatureGroupSchema) -> bool:
        self.readable(schema)
        readable, total = self._readable[(schema.name, schema.version)]
        return len(readable) == total

    def groups(self) -> list[FeatureGroupSchema]:
        """Latest version of every group with a feature the key may read, by name."""
        if self._groups is None:
            self._groups = [s for s in self.cache.schemas(self.registry) if self.readable(s)]
        return self._groups

    def reads_refs(self, refs: Iterable[str]) -> bool:
        """True when the key may read every feature the references name."""
        for text in refs:
            try:
                ref = FeatureRef.parse(text)
                schema = self.registry.get_group(ref.group, ref.version)
            except Exception:  # an unknown or malformed ref: not shown
                return False
            names = schema.feature_names if ref.is_wildcard else (ref.feature,)
            if not all(self.key.can(Access.READ, schema.name, f) for f in names):
                return False
        return True

    # -- history events, read once per kind -----------------------------------------------------

    def events(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        """Events of one kind by `group@version`, oldest first (one read per kind)."""
        if kind not in self._events:
            self._events[kind] = self.cache.events(self.registry, kind)
        return self._events[kind]

    def _of(self, kind: str, schema: FeatureGroupSchema) -> list[dict[str, Any]]:
        return self.events(kind).get(group_key(schema.name, schema.version), [])

    def statistics(self, schema: FeatureGroupSchema) -> dict[int | None, GroupStatistics]:
        """Stored statistics by Delta version (as `statistics_history`), readable features only."""
        readable = set(self.readable(schema))
        out: dict[int | None, GroupStatistics] = {}
        for event in self._of(STATS, schema):
            stats = GroupStatistics.from_dict(event)
            features = {n: f for n, f in stats.features.items() if n in readable}
            out[stats.delta_version] = replace(stats, features=features)
        return dict(sorted(out.items(), key=lambda item: -1 if item[0] is None else item[0]))

    def last_check(self, schema: FeatureGroupSchema) -> dict[str, Any] | None:
        """The latest check report with only the results this key may see."""
        checks = self._of(CHECKS, schema)
        if not checks:
            return None
        report = dict(checks[-1])
        if not self.reads_all(schema):
            readable = set(self.readable(schema))
            results = [r for r in report.get("results", []) if r.get("feature") in readable]
            if not results:
                return None
            report["results"] = results
            report["passed"] = all(r["passed"] for r in results)
        return report

    def row(self, schema: FeatureGroupSchema) -> GroupRow:
        """The search-page line of a group."""
        writes = self._of(WRITE, schema)
        runs = [e for e in self._of(MATERIALIZATION_RUN, schema) if e.get("outcome") == "succeeded"]
        times = [t for t in (_time(e.get("recorded_at")) for e in writes + runs) if t is not None]
        last = max(times) if times else None
        stats = self._of(STATS, schema)
        newest = _time(stats[-1].get("last_event")) if stats else None
        rows = writes[-1].get("row_count") if writes else None
        if rows is None and stats:
            rows = stats[-1].get("row_count")
        state = GroupFreshness(
            group=schema.name,
            version=schema.version,
            max_age=schema.freshness,
            newest_event=newest,
            last_materialized=last,
            checked_at=self.now,
        ).status
        check = self.last_check(schema)
        return GroupRow(
            name=schema.name,
            version=schema.version,
            entity_keys=tuple(schema.entity_keys),
            features=tuple(self.readable(schema)),
            description=schema.description,
            owner=schema.owner,
            tags=dict(schema.tags),
            rows=rows,
            last_materialized=last,
            age_seconds=None if last is None else (self.now - last).total_seconds(),
            freshness=NEVER if last is None else state,
            check=None if check is None else bool(check.get("passed")),
            virtual=self.registry.get_object(VIRTUAL, group_key(schema.name, schema.version))
            is not None,
        )

    # -- pages ----------------------------------------------------------------------------------

    def search(
        self, query: str = "", entity: str = "", freshness: str = "", limit: int = 500
    ) -> tuple[list[GroupRow], int]:
        """Groups matching `query` (name, readable feature, tag, owner, description) and the
        filters: (the first `limit` rows, how many matched)."""
        words = query.lower().split()
        matched = []
        for schema in self.groups():
            if entity and entity not in schema.entity_keys:
                continue
            if words and not all(w in _haystack(schema, self.readable(schema)) for w in words):
                continue
            matched.append(schema)
        rows = [self.row(s) for s in matched]
        if freshness:
            rows = [r for r in rows if r.freshness == freshness]
        return rows[:limit], len(rows)

    def entities(self) -> list[str]:
        """Every entity key of a visible group."""
        return sorted({k for s in self.groups() for k in s.entity_keys})

    def group_page(self, schema: FeatureGroupSchema) -> GroupPage:
        reads_all = self.reads_all(schema)
        readable = set(self.readable(schema))
        drifts = []
        for event in self._of(DRIFT, schema):
            report = DriftReport.from_dict(event)
            features = {n: f for n, f in report.features.items() if n in readable}
            if features:
                drifts.append(replace(report, features=features))
        sync = next(
            (
                p
                for p in self.registry.list_objects(SYNC_KIND).values()
                if p.get("group") == schema.name and p.get("version") == schema.version
            ),
            None,
        )
        decisions = list(reversed(self._of(ROUTER_METRICS, schema)[-20:]))
        lineage = LineageGraph.build(self)
        node = f"group:{schema.name}"
        return GroupPage(
            schema=schema,
            row=self.row(schema),
            versions=self.registry.versions(schema.name),
            reads_all=reads_all,
            features=[f for f in schema.features if f.name in readable],
            statistics=self.statistics(schema),
            drifts=drifts,
            check=self.last_check(schema),
            writes=list(reversed(self._of(WRITE, schema)[-20:])),
            sync=sync,
            decisions=decisions,
            virtual=self.registry.get_object(VIRTUAL, group_key(schema.name, schema.version))
            if reads_all
            else None,
            upstream=[lineage.nodes[e[0]] for e in lineage.edges if e[1] == node],
            downstream=[lineage.nodes[e[1]] for e in lineage.edges if e[0] == node],
        )

    def training_sets(self) -> list[dict[str, Any]]:
        """Saved manifests whose every feature the key may read, newest first."""
        out = [
            dict(p, name=p.get("name") or name)
            for name, p in self.registry.list_objects(TRAINING_SET).items()
            if self.reads_refs(p.get("feature_refs", []))
        ]
        return sorted(out, key=lambda p: str(p.get("created_at", "")), reverse=True)

    def services(self) -> list[dict[str, Any]]:
        """Feature services whose every feature the key may read, by name."""
        found = self.registry.list_objects(SERVICE_KIND)
        return [p for _, p in sorted(found.items()) if self.reads_refs(p.get("features", []))]


def _haystack(schema: FeatureGroupSchema, readable: list[str]) -> str:
    parts = [schema.name, schema.owner or "", schema.description, *readable]
    for name, value in schema.tags.items():
        parts += [name, value, f"{name}={value}"]
    return "\n".join(parts).lower()


# -- lineage --------------------------------------------------------------------------------------

Node = tuple[str, str]
"""(kind, label): kind is `source`, `group`, `training_set` or `service`."""


@dataclass
class LineageGraph:
    """Sources -> groups -> training sets and services, as nodes and edges (by node id)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node_id: str, kind: str, label: str) -> str:
        self.nodes.setdefault(node_id, (kind, label))
        return node_id

    def link(self, upstream: str, downstream: str) -> None:
        if upstream != downstream and (upstream, downstream) not in self.edges:
            self.edges.append((upstream, downstream))

    @classmethod
    def build(cls, catalog: Catalog) -> LineageGraph:
        """The graph of what the key may see: its groups, their sources and upstream groups
        where it reads the whole group, and the training sets and services it may read."""
        graph = cls()
        visible = {s.name: s for s in catalog.groups()}
        for schema in visible.values():
            graph.add(f"group:{schema.name}", "group", schema.name)
        lineage = catalog.events(LINEAGE)
        for schema in visible.values():
            if not catalog.reads_all(schema):
                continue
            target = f"group:{schema.name}"
            upstream_groups: list[str] = []
            sources: list[str] = []
            if schema.source is not None and schema.source.table:
                sources.append(schema.source.table)
            if schema.event_source is not None:
                if schema.event_source.kind == "group":
                    upstream_groups.append(schema.event_source.name.partition("@")[0])
                else:
                    sources.append(schema.event_source.name)
            for composite in schema.composites:
                upstream_groups += [
                    r.partition(".")[0] for r in composite.source_features if "." in r
                ]
            virtual = catalog.registry.get_object(VIRTUAL, group_key(schema.name, schema.version))
            if virtual is not None:
                sources += [str(s) for s in virtual.get("sources", [])]
            for event in lineage.get(group_key(schema.name, schema.version), [])[-5:]:
                sources += [str(s) for s in event.get("sources") or []]
                upstream_groups += [
                    str(g).partition("@")[0] for g in event.get("upstream_groups") or []
                ]
            for source in dict.fromkeys(sources):
                graph.link(graph.add(f"source:{source}", "source", source), target)
            for name in dict.fromkeys(upstream_groups):
                if name in visible:
                    graph.link(f"group:{name}", target)
        for manifest in catalog.training_sets():
            node = graph.add(f"training_set:{manifest['name']}", "training_set", manifest["name"])
            for name in _groups_of(manifest.get("feature_refs", [])):
                if name in visible:
                    graph.link(f"group:{name}", node)
        for service in catalog.services():
            node = graph.add(f"service:{service['name']}", "service", service["name"])
            for name in _groups_of(service.get("features", [])):
                if name in visible:
                    graph.link(f"group:{name}", node)
        return graph


def _groups_of(refs: Iterable[str]) -> list[str]:
    names = []
    for text in refs:
        try:
            names.append(FeatureRef.parse(text).group)
        except Exception:
            continue
    return list(dict.fromkeys(names))
