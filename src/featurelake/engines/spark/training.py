"""Training sets: point-in-time-correct features for entity rows, with a manifest to rebuild them.

The store resolves references and gives each group's rows (`store.group_frame`): a Gold table
read at one Delta version, or a virtual query. The as-of join itself is
`featurelake.engines.spark.pit`. The manifest records every Delta version read; virtual groups are
listed by group version only (their sources are read as they are at build time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurelake.engines.spark.aggregations import is_aggregation_group, join_aggregations
from featurelake.engines.spark.composites import finish_request
from featurelake.engines.spark.frames import to_spark
from featurelake.engines.spark.pit import PitSource, point_in_time_join
from featurelake.engines.spark.sources import FeatureFrameSource, TableRead
from featurelake.errors import PointInTimeError
from featurelake.plan.read_plan import ReadPlan, ReadRequest, resolve_read
from featurelake.plan.refs import (
    check_entity_keys,
    entity_output_names,
    entity_timestamp_column,
)
from featurelake.plan.rules import check_fill
from featurelake.registry import side_location
from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


TRAINING_SET = "training_set"


@dataclass(frozen=True)
class TrainingSetManifest:
    """Everything needed to rebuild a training set exactly."""

    feature_refs: tuple[str, ...]
    tables: tuple[TableRead, ...]
    timestamp_column: str
    ttl_seconds: float | None = None
    fill: str = "none"
    created_at: str = ""
    name: str | None = None
    entity_location: str | None = None
    output_columns: tuple[str, ...] = field(default_factory=tuple)
    virtual_groups: tuple[str, ...] = field(default_factory=tuple)
    """`group@version` of groups computed at build time: virtual queries, and aggregation groups
    (whose registered source groups are in `tables`, pinned)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSetManifest:
        values = dict(data)
        values["feature_refs"] = tuple(values["feature_refs"])
        values["tables"] = tuple(TableRead(**t) for t in values["tables"])
        values["output_columns"] = tuple(values.get("output_columns", ()))
        values["virtual_groups"] = tuple(values.get("virtual_groups", ()))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainingSetManifest:
        return cls.from_dict(json.loads(text))

    def delta_version(self, group: str) -> int:
        """The Delta version read for `group`."""
        for table in self.tables:
            if table.group == group:
                return table.delta_version
        raise KeyError(group)


@dataclass(frozen=True)
class TrainingSet:
    """A training set DataFrame and its manifest."""

    df: DataFrame
    manifest: TrainingSetManifest


def build_training_set(
    store: FeatureFrameSource,
    entity_df: Any,
    request: ReadRequest | ReadPlan,
    *,
    name: str | None = None,
    pinned_versions: Mapping[str, int] | None = None,
) -> TrainingSet:
    """Join every row of `entity_df` to the features of a point-in-time `request` (or the plan
    a store made of it) as of the row's own time.

    Unknown refs, missing key columns and bad arguments raise before any Spark job runs.
    With `name`, the entity rows are saved beside the store and the manifest is kept in the
    registry, so `rebuild(name)` needs nothing else.
    """
    plan = request if isinstance(request, ReadPlan) else resolve_read(store.registry, request)
    expanded, selected = plan.expanded, plan.selected
    fill, ttl_override = plan.request.fill, plan.request.ttl
    check_fill(fill)
    entities = to_spark(store.spark, entity_df, what="entity_df")
    typed = [f.name for f in entities.schema.fields if f.dataType.typeName() == "timestamp"]
    ts_column = entity_timestamp_column(
        entities.columns, typed, plan.request.timestamp_column, selected
    )
    check_entity_keys(selected, entities.columns)
    names = entity_output_names(selected, set(entities.columns))
    sources = []
    reads = []
    virtual_groups = []
    aggregated = []
    for schema, features in selected.values():
        if is_aggregation_group(schema):  # computed from events below, not joined as rows
            aggregated.append((schema, features))
            continue
        frame, read = store.group_frame(
            schema, features, version=(pinned_versions or {}).get(schema.name)
        )
        sources.append(
            PitSource(
                group=schema.name,
                df=frame,
                entity_keys=schema.entity_keys,
                timestamp_key=schema.timestamp_key,
                features=tuple(features),
                output_names={f: names[(schema.name, f)] for f in features},
                ttl=ttl_override or schema.ttl,
            )
        )
        if read is None:
            virtual_groups.append(f"{schema.name}@{schema.version}")
        else:
            reads.append(read)
    result = point_in_time_join(entities, sources, ts_column, fill=fill)  # type: ignore[arg-type]
    for schema, features in aggregated:
        source = schema.event_source.name.partition("@")[0] if schema.event_source else ""
        result, read = join_aggregations(
            store,
            result,
            schema,
            features,
            ts_column,
            names,
            version=(pinned_versions or {}).get(source),
        )
        if read is not None:
            reads.append(read)
        virtual_groups.append(f"{schema.name}@{schema.version}")
    result = finish_request(result, entities.columns, expanded, names)
    entity_location = None
    if name:
        location = side_location(store.config, "training_sets", name)
        entities.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            location.path
        )
        entity_location = location.path
    manifest = TrainingSetManifest(
        feature_refs=tuple(str(r) for r in plan.request.refs),
        tables=tuple(reads),
        timestamp_column=ts_column,
        ttl_seconds=ttl_override.total_seconds() if ttl_override else None,
        fill=fill,
        created_at=utc_now().isoformat(),
        name=name,
        entity_location=entity_location,
        output_columns=tuple(result.columns[len(entities.columns) :]),
        virtual_groups=tuple(virtual_groups),
    )
    if name:
        store.registry.put_object(TRAINING_SET, name, manifest.to_dict())
    return TrainingSet(result, manifest)


class TrainingSetMethods:
    """`training_set` for any store that is a `FeatureFrameSource` (the materialized and
    virtual stores share it): `build_training_set` with the store as its source."""

    def training_set(
        self, entity_df: Any, request: ReadRequest, *, name: str | None = None
    ) -> TrainingSet:
        """The training set of a point-in-time `request` and the manifest that rebuilds it."""
        return build_training_set(self, entity_df, request, name=name)  # type: ignore[arg-type]


def rebuild_training_set(
    store: FeatureFrameSource,
    manifest: TrainingSetManifest | str,
    entity_df: Any = None,
) -> TrainingSet:
    """The training set of `manifest` (or of the name it was saved under), read at the same
    Delta versions with the same settings."""
    if isinstance(manifest, str):
        saved = store.registry.get_object(TRAINING_SET, manifest)
        if saved is None:
            raise PointInTimeError(
                f"No training set named '{manifest}' is saved in this store.",
                fix="pass the manifest object, or build the set with get_training_set(..., "
                "name=...) first.",
            )
        manifest = TrainingSetManifest.from_dict(saved)
    if entity_df is None:
        if manifest.entity_location is None:
            raise PointInTimeError(
                "This manifest does not keep its entity rows.",
                fix="pass the same entity_df to rebuild(manifest, entity_df), or build the set "
                "with a name so its entity rows are saved.",
            )
        entity_df = store.spark.read.format("delta").load(manifest.entity_location)
    pinned: dict[str, int] = {}
    for table in manifest.tables:
        store.registry.get_group(table.group, table.group_version)  # must still be registered
        pinned[table.group] = table.delta_version
    refs = [_pin_ref(ref, manifest) for ref in manifest.feature_refs]
    request = ReadRequest.historical(
        refs,
        ttl=timedelta(seconds=manifest.ttl_seconds) if manifest.ttl_seconds else None,
        timestamp_column=manifest.timestamp_column,
        fill=manifest.fill,
    )
    rebuilt = build_training_set(store, entity_df, request, pinned_versions=pinned)
    return TrainingSet(rebuilt.df, manifest)


def _pin_ref(ref: str, manifest: TrainingSetManifest) -> str:
    """Pin a ref to the group version the manifest read."""
    group, _, feature = ref.partition(".")
    name = group.split("@")[0]
    for table in manifest.tables:
        if table.group == name:
            return f"{name}@{table.group_version}.{feature}"
    for pinned in manifest.virtual_groups:
        if pinned.partition("@")[0] == name:
            return f"{pinned}.{feature}"
    return ref


def _as_list(refs: str | Sequence[str]) -> list[str]:
    return [refs] if isinstance(refs, str) else list(refs)
