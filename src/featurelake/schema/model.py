"""Feature and feature-group schemas: immutable, validated on creation, YAML/dict round-trip."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from typing import Any

from featurelake.errors import FeatureNotFoundError, SchemaValidationError
from featurelake.schema.aggregations import (
    Aggregation,
    AggregationSource,
    CompositeFeature,
    check_composites,
    window_label,
)
from featurelake.schema.durations import format_duration, parse_duration
from featurelake.schema.keys import check_identifier, check_keys, check_mapping
from featurelake.schema.materialization import MaterializationSource, check_cron
from featurelake.schema.types import (
    DataType,
    FeatureType,
    SqlType,
    feature_type_of,
    value_type_of,
)

DEFAULT_TIMESTAMP_KEY = "event_timestamp"


def aggregation_parts(
    group: str,
    source: Any,
    aggregations: Iterable[Aggregation | Mapping[str, Any]],
    features: tuple[Any, ...],
) -> tuple[AggregationSource | None, tuple[Aggregation, ...], tuple[Any, ...]]:
    """The source, aggregations and features of a group: an aggregation group's features are
    its aggregations' outputs (declared features must match them)."""
    aggs = tuple(
        a if isinstance(a, Aggregation) else Aggregation.from_dict(a) for a in aggregations
    )
    if not aggs:
        if source is not None:
            raise SchemaValidationError(
                f"Group '{group}' names an event_source but no aggregations.",
                fix="add 'aggregations:' (column, function, windows) or remove 'event_source'.",
            )
        return None, (), features
    if source is None:
        raise SchemaValidationError(
            f"Group '{group}' declares aggregations but no event_source.",
            fix="add 'event_source: <registered group>' (or {table: ...} / {path: ...}).",
        )
    parsed_source = AggregationSource.parse(source)
    derived = []
    for aggregation in aggs:
        for feature_name, window in aggregation.outputs():
            derived.append(
                FeatureSchema(
                    feature_name,
                    aggregation.result_type,
                    description=f"{aggregation.function} of {aggregation.column} over "
                    f"{window_label(window)}"
                    + (f" where {aggregation.filter}" if aggregation.filter else ""),
                )
            )
    declared = tuple(
        f if isinstance(f, FeatureSchema) else FeatureSchema.from_dict(f) for f in features
    )
    if declared and {f.name for f in declared} != {f.name for f in derived}:
        raise SchemaValidationError(
            f"Group '{group}' declares features {[f.name for f in declared]} beside "
            f"aggregations that produce {[f.name for f in derived]}.",
            fix="leave 'features' out of an aggregation group: they come from 'aggregations'.",
        )
    return parsed_source, aggs, tuple(derived)


def _default_feature_type(data_type: SqlType) -> FeatureType:
    if data_type.is_numeric:
        return FeatureType.NUMERICAL
    if data_type.kind in (DataType.STRING, DataType.BOOLEAN):
        return FeatureType.CATEGORICAL
    if data_type.kind is DataType.ARRAY:
        return FeatureType.VECTOR
    if data_type.kind in (DataType.TIMESTAMP, DataType.DATE):
        return FeatureType.TIMESERIES
    return FeatureType.COMPLEX


@dataclass(frozen=True)
class FeatureSchema:
    """One feature: its name, type, meaning and declared limits.

    `min_value` / `max_value` / `allowed_values` are enforced on every write.
    """

    name: str
    data_type: SqlType
    feature_type: FeatureType
    description: str = ""
    nullable: bool = True
    min_value: float | None = None
    max_value: float | None = None
    unit: str | None = None
    allowed_values: tuple[Any, ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    default_value: Any = None
    """Served online for an entity that has no value of this feature."""
    tags: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        data_type: str | DataType | SqlType | None = None,
        feature_type: str | FeatureType | None = None,
        description: str = "",
        nullable: bool = True,
        min_value: float | None = None,
        max_value: float | None = None,
        unit: str | None = None,
        allowed_values: Iterable[Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        default_value: Any = None,
        tags: Iterable[str] | None = None,
        value_type: Any = None,
    ) -> None:
        check_identifier(name, "feature")
        if (data_type is None) == (value_type is None):
            raise SchemaValidationError(
                f"Feature '{name}' needs one type: data_type= (a Spark type) or value_type= "
                "(INT, FLOAT, STRING, BOOL, LIST, DICT)"
                + (", not both." if data_type is not None else "."),
                fix="pass data_type='double' (or int, bigint, string, array<double>, ...).",
            )
        sql_type = SqlType.parse(data_type if data_type is not None else value_type_of(value_type))
        try:
            ftype = (
                feature_type_of(feature_type)
                if feature_type is not None
                else _default_feature_type(sql_type)
            )
        except ValueError:
            raise SchemaValidationError(
                f"Feature '{name}' has the feature type '{feature_type}'.",
                fix="use one of " + ", ".join(t.value for t in FeatureType) + ".",
            ) from None
        if (min_value is not None or max_value is not None) and not sql_type.is_numeric:
            raise SchemaValidationError(
                f"Feature '{name}' declares min/max but its type {sql_type} is not numeric.",
                fix="remove min/max, or make the feature numeric.",
            )
        if min_value is not None and max_value is not None and min_value > max_value:
            raise SchemaValidationError(
                f"Feature '{name}' has min {min_value} greater than max {max_value}.",
                fix="swap them or correct one.",
            )
        allowed = tuple(allowed_values) if allowed_values is not None else None
        if allowed is not None and not sql_type.is_atomic:
            raise SchemaValidationError(
                f"Feature '{name}' declares allowed values but its type {sql_type} is not atomic.",
                fix="remove allowed_values or use an atomic type.",
            )
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "data_type", sql_type)
        set_(self, "feature_type", ftype)
        set_(self, "description", description or "")
        set_(self, "nullable", bool(nullable))
        set_(self, "min_value", min_value)
        set_(self, "max_value", max_value)
        set_(self, "unit", unit)
        set_(self, "allowed_values", allowed)
        set_(self, "metadata", dict(metadata or {}))
        set_(self, "default_value", default_value)
        if isinstance(tags, str):
            tags = [tags]
        set_(self, "tags", tuple(str(t) for t in tags or ()))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form; `FeatureSchema.from_dict(f.to_dict()) == f`."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.data_type.simple_string(),
            "feature_type": self.feature_type.value,
        }
        if self.description:
            out["description"] = self.description
        if not self.nullable:
            out["nullable"] = False
        for key in ("min_value", "max_value", "unit"):
            if getattr(self, key) is not None:
                out[key.removesuffix("_value") if key != "unit" else key] = getattr(self, key)
        if self.allowed_values is not None:
            out["allowed_values"] = list(self.allowed_values)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.default_value is not None:
            out["default_value"] = self.default_value
        if self.tags:
            out["tags"] = list(self.tags)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """Read the YAML form: name, type, feature_type, description, nullable, min, max..."""
        check_mapping(data, "A feature", "write each feature as '- name: x\\n  type: double'.")
        known = {f.name for f in fields(cls)} | {"type", "min", "max", "value_type"}  # aliases
        check_keys(data, known, f"Feature '{data.get('name')}'")
        data_type = data.get("type", data.get("data_type"))
        if data_type is None and data.get("value_type") is not None:
            data_type = value_type_of(data["value_type"])
        if data_type is None:
            raise SchemaValidationError(
                f"Feature '{data.get('name')}' has no type.",
                fix="add 'type: double' (or int, bigint, string, array<double>, ...).",
            )
        return cls(
            name=data.get("name"),  # type: ignore[arg-type]
            data_type=data_type,
            feature_type=data.get("feature_type"),
            description=data.get("description", ""),
            nullable=data.get("nullable", True),
            min_value=data.get("min", data.get("min_value")),
            max_value=data.get("max", data.get("max_value")),
            unit=data.get("unit"),
            allowed_values=data.get("allowed_values"),
            metadata=data.get("metadata"),
            default_value=data.get("default_value"),
            tags=data.get("tags"),
        )


class CheckAction(StrEnum):
    """What a write does when a quality rule fails: raise, log and record, or set rows aside."""

    FAIL = "fail"
    WARN = "warn"
    QUARANTINE = "quarantine"


RULE_TYPES = (
    "not_null",
    "range",
    "allowed_values",
    "max_null_rate",
    "unique_keys",
    "freshness",
    "sql",
)
_FEATURE_RULES = ("not_null", "range", "allowed_values", "max_null_rate")


@dataclass(frozen=True)
class QualityRule:
    """One declared quality rule (pure data; `featurelake.quality` evaluates it).

    Types: `not_null`, `range` (min/max), `allowed_values` (values), `max_null_rate`
    (max_rate in [0, 1]), `unique_keys` (entity keys + event time unique), `freshness`
    (max_age of the newest event), `sql` (a Spark SQL boolean expression every row must meet).
    """

    type: str
    name: str
    feature: str | None = None
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] | None = None
    max_rate: float | None = None
    max_age: timedelta | None = None
    expr: str | None = None

    def __init__(
        self,
        type: str,
        name: str | None = None,
        feature: str | None = None,
        min: float | None = None,
        max: float | None = None,
        values: Iterable[Any] | None = None,
        max_rate: float | None = None,
        max_age: str | int | float | timedelta | None = None,
        expr: str | None = None,
    ) -> None:
        kind = str(type).lower()
        if kind not in RULE_TYPES:
            raise SchemaValidationError(
                f"The quality rule type '{type}' is unknown.",
                fix="use one of " + ", ".join(RULE_TYPES) + ".",
            )
        label = name or (f"{kind}_{feature}" if feature else kind)
        if kind in _FEATURE_RULES and not feature:
            raise SchemaValidationError(
                f"The quality rule '{label}' ({kind}) names no feature.",
                fix="add 'feature: <name>' to the rule.",
            )
        problem = None
        if kind == "range" and min is None and max is None:
            problem = "needs 'min', 'max' or both"
        elif kind == "range" and min is not None and max is not None and min > max:
            problem = f"has min {min} greater than max {max}"
        elif kind == "allowed_values" and not values:
            problem = "needs a non-empty 'values' list"
        elif kind == "max_null_rate" and (
            max_rate is None or isinstance(max_rate, bool) or not 0 <= float(max_rate) <= 1
        ):
            problem = "needs 'max_rate' between 0 and 1"
        elif kind == "freshness" and max_age is None:
            problem = "needs 'max_age' (e.g. 1d)"
        elif kind == "sql" and (not isinstance(expr, str) or not expr.strip()):
            problem = "needs 'expr', a Spark SQL boolean expression every row must meet"
        if problem:
            raise SchemaValidationError(
                f"The quality rule '{label}' ({kind}) {problem}.",
                fix="correct the rule under 'checks.rules' in the group's YAML.",
            )
        check_identifier(label, "quality rule")
        set_ = object.__setattr__
        set_(self, "type", kind)
        set_(self, "name", label)
        set_(self, "feature", feature)
        set_(self, "min", None if min is None else float(min))
        set_(self, "max", None if max is None else float(max))
        set_(self, "values", tuple(values) if values is not None else None)
        set_(self, "max_rate", None if max_rate is None else float(max_rate))
        set_(self, "max_age", parse_duration(max_age, what=f"max_age of rule '{label}'"))
        set_(self, "expr", expr)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        for key in ("feature", "min", "max", "max_rate", "expr"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.values is not None:
            out["values"] = list(self.values)
        if self.max_age is not None:
            out["max_age"] = format_duration(self.max_age)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityRule:
        check_mapping(
            data,
            "A quality rule",
            "write each rule as '- type: max_null_rate\n  feature: x\n  max_rate: 0.1'.",
        )
        check_keys(
            data,
            {f.name for f in fields(cls)},
            f"Quality rule '{data.get('name') or data.get('type')}'",
        )
        if "type" not in data:
            raise SchemaValidationError(
                f"Quality rule {dict(data)} has no 'type'.",
                fix="add 'type:' with one of " + ", ".join(RULE_TYPES) + ".",
            )
        return cls(**{str(k): v for k, v in data.items()})


@dataclass(frozen=True)
class GroupChecks:
    """The quality rules of a group, what a failing write does, and drift thresholds."""

    rules: tuple[QualityRule, ...] = ()
    on_write: CheckAction = CheckAction.WARN
    psi_threshold: float = 0.2
    ks_threshold: float = 0.1

    def __init__(
        self,
        rules: Iterable[QualityRule | Mapping[str, Any]] = (),
        on_write: str | CheckAction = CheckAction.WARN,
        psi_threshold: float = 0.2,
        ks_threshold: float = 0.1,
    ) -> None:
        parsed = tuple(r if isinstance(r, QualityRule) else QualityRule.from_dict(r) for r in rules)
        names = [r.name for r in parsed]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SchemaValidationError(
                f"Quality rule name(s) {twice} are used twice.",
                fix="give each rule its own 'name'.",
            )
        try:
            action = CheckAction(str(on_write).lower())
        except ValueError:
            raise SchemaValidationError(
                f"checks.on_write is '{on_write}'.",
                fix="use one of " + ", ".join(a.value for a in CheckAction) + ".",
            ) from None
        for key, value in (("psi_threshold", psi_threshold), ("ks_threshold", ks_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise SchemaValidationError(
                    f"checks.{key} is {value!r}.", fix=f"set checks.{key} to a positive number."
                )
        set_ = object.__setattr__
        set_(self, "rules", parsed)
        set_(self, "on_write", action)
        set_(self, "psi_threshold", float(psi_threshold))
        set_(self, "ks_threshold", float(ks_threshold))

    def to_dict(self) -> dict[str, Any]:
        return {
            "on_write": self.on_write.value,
            "psi_threshold": self.psi_threshold,
            "ks_threshold": self.ks_threshold,
            "rules": [r.to_dict() for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupChecks:
        fix = "write 'checks: {on_write: warn, rules: [...]}'."
        check_mapping(data, "'checks'", fix, got=type(data).__name__)
        check_keys(data, {f.name for f in fields(cls)}, "'checks'")
        return cls(
            rules=data.get("rules") or (),
            on_write=data.get("on_write", CheckAction.WARN),
            psi_threshold=data.get("psi_threshold", 0.2),
            ks_threshold=data.get("ks_threshold", 0.1),
        )


@dataclass(frozen=True)
class FeatureGroupSchema:
    """A feature group: entity keys, event time, features, and how the group is kept.

    Immutable and validated on creation; `to_dict` / `from_dict` give the YAML form.
    """

    name: str
    entity_keys: tuple[str, ...]
    features: tuple[FeatureSchema, ...]
    version: int = 1
    timestamp_key: str = DEFAULT_TIMESTAMP_KEY
    description: str = ""
    owner: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    ttl: timedelta | None = None
    partition_columns: tuple[str, ...] = ()
    entity_key_types: Mapping[str, SqlType] = field(default_factory=dict)
    freshness: timedelta | None = None
    checks: GroupChecks | None = None
    materialization_schedule: str | None = None
    source: MaterializationSource | None = None
    event_source: AggregationSource | None = None
    """Event source of an aggregation group (its features are `aggregations`' outputs)."""
    aggregations: tuple[Aggregation, ...] = ()
    composites: tuple[CompositeFeature, ...] = ()
    """Features computed from other features by an expression (not stored)."""

    def __init__(
        self,
        name: str,
        entity_keys: str | Sequence[str],
        features: Iterable[FeatureSchema | Mapping[str, Any]],
        version: int = 1,
        timestamp_key: str = DEFAULT_TIMESTAMP_KEY,
        description: str = "",
        owner: str | None = None,
        tags: Mapping[str, str] | Iterable[str] | None = None,
        ttl: str | int | float | timedelta | None = None,
        partition_columns: Sequence[str] = (),
        entity_key_types: Mapping[str, str | DataType | SqlType] | None = None,
        freshness: str | int | float | timedelta | None = None,
        checks: GroupChecks | Mapping[str, Any] | None = None,
        materialization_schedule: str | None = None,
        source: MaterializationSource | Mapping[str, Any] | str | None = None,
        event_source: AggregationSource | str | Mapping[str, str] | None = None,
        aggregations: Iterable[Aggregation | Mapping[str, Any]] = (),
        composites: Iterable[CompositeFeature | Mapping[str, Any]] = (),
    ) -> None:
        check_identifier(name, "feature group")
        keys = (entity_keys,) if isinstance(entity_keys, str) else tuple(entity_keys)
        if not keys:
            raise SchemaValidationError(
                f"Feature group '{name}' has no entity keys.",
                fix="declare the column(s) that identify an entity, e.g. entity_keys: "
                "[customer_id].",
            )
        for key in keys:
            check_identifier(key, f"entity key of group '{name}'")
        if len(set(keys)) != len(keys):
            raise SchemaValidationError(
                f"Feature group '{name}' lists an entity key twice: {list(keys)}.",
                fix="list each key once.",
            )
        check_identifier(timestamp_key, f"timestamp key of group '{name}'")
        if timestamp_key in keys:
            raise SchemaValidationError(
                f"Feature group '{name}' uses '{timestamp_key}' as both an entity key and the "
                "timestamp key.",
                fix="choose a separate event-time column.",
            )
        agg_source, aggs, features = aggregation_parts(
            name, event_source, aggregations, tuple(features)
        )
        feats = tuple(
            f if isinstance(f, FeatureSchema) else FeatureSchema.from_dict(f) for f in features
        )
        if not feats:
            raise SchemaValidationError(
                f"Feature group '{name}' has no features.", fix="declare at least one feature."
            )
        seen: set[str] = set()
        for feature in feats:
            if feature.name in seen:
                raise SchemaValidationError(
                    f"Feature group '{name}' declares the feature '{feature.name}' twice.",
                    fix="remove or rename one of them.",
                )
            seen.add(feature.name)
            if feature.name in keys or feature.name == timestamp_key:
                raise SchemaValidationError(
                    f"In group '{name}', '{feature.name}' is both a key and a feature.",
                    fix="keys and the timestamp are stored anyway: remove it from features.",
                )
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaValidationError(
                f"Feature group '{name}' has version {version!r}.",
                fix="use a whole number from 1 up.",
            )
        columns = {*keys, timestamp_key, *seen}
        for column in partition_columns:
            if column not in columns:
                raise SchemaValidationError(
                    f"Group '{name}' partitions by '{column}', which is not one of its columns.",
                    fix=f"partition by one of: {', '.join(sorted(columns))}.",
                )
        key_types = {k: SqlType.parse(v) for k, v in (entity_key_types or {}).items()}
        for key, sql_type in key_types.items():
            if key not in keys:
                raise SchemaValidationError(
                    f"Group '{name}' gives a type for '{key}', which is not an entity key.",
                    fix=f"type only the entity keys: {', '.join(keys)}.",
                )
            if not sql_type.is_atomic:
                raise SchemaValidationError(
                    f"Entity key '{key}' of group '{name}' has the type {sql_type}.",
                    fix="entity keys must be atomic (bigint, string, ...).",
                )
        if tags is None:
            tag_map: dict[str, str] = {}
        elif isinstance(tags, Mapping):
            tag_map = {str(k): str(v) for k, v in tags.items()}
        else:
            tag_map = {str(t): "" for t in tags}
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "entity_keys", keys)
        set_(self, "features", feats)
        set_(self, "version", version)
        set_(self, "timestamp_key", timestamp_key)
        set_(self, "description", description or "")
        set_(self, "owner", owner)
        set_(self, "tags", tag_map)
        set_(self, "ttl", parse_duration(ttl, what=f"ttl of group '{name}'"))
        set_(self, "partition_columns", tuple(partition_columns))
        set_(self, "entity_key_types", key_types)
        set_(self, "freshness", parse_duration(freshness, what=f"freshness of group '{name}'"))
        group_checks = (
            checks
            if checks is None or isinstance(checks, GroupChecks)
            else GroupChecks.from_dict(checks)
        )
        if group_checks is not None:
            features_by_name = {f.name: f for f in feats}
            for rule in group_checks.rules:
                target = features_by_name.get(rule.feature) if rule.feature else None
                if rule.feature and target is None:
                    raise SchemaValidationError(
                        f"Quality rule '{rule.name}' of group '{name}' names the feature "
                        f"'{rule.feature}', which the group does not have.",
                        fix=f"use one of: {', '.join(features_by_name)}.",
                    )
                if rule.type == "range" and target is not None and not target.data_type.is_numeric:
                    raise SchemaValidationError(
                        f"Quality rule '{rule.name}' of group '{name}' is a range on the "
                        f"non-numeric feature '{rule.feature}'.",
                        fix="use allowed_values or a sql rule for non-numeric features.",
                    )
        set_(self, "checks", group_checks)
        set_(
            self,
            "materialization_schedule",
            None
            if materialization_schedule is None
            else check_cron(
                materialization_schedule, what=f"materialization_schedule of group '{name}'"
            ),
        )
        set_(self, "source", MaterializationSource.from_value(source))
        set_(self, "event_source", agg_source)
        set_(self, "aggregations", aggs)
        set_(self, "composites", check_composites(name, seen, composites))

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every data column a write must carry: keys, timestamp, features."""
        return (*self.entity_keys, self.timestamp_key, *self.feature_names)

    def feature(self, name: str) -> FeatureSchema:
        """The feature called `name`, or a FeatureNotFoundError listing the ones there are."""
        for feature in self.features:
            if feature.name == name:
                return feature
        raise FeatureNotFoundError(
            f"Feature group '{self.name}' (v{self.version}) has no feature '{name}'.",
            fix=f"use one of: {', '.join(self.feature_names)}.",
            group=self.name,
            feature=name,
        )

    def with_changes(self, **changes: Any) -> FeatureGroupSchema:
        """A new schema with some fields replaced (validated again)."""
        data = self.to_dict()
        data.update(changes)
        return FeatureGroupSchema.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form; `from_dict(to_dict())` gives an equal schema."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "entity_keys": list(self.entity_keys),
            "timestamp_key": self.timestamp_key,
            "features": [f.to_dict() for f in self.features],
        }
        if self.description:
            out["description"] = self.description
        if self.owner:
            out["owner"] = self.owner
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.ttl is not None:
            out["ttl"] = format_duration(self.ttl)
        if self.freshness is not None:
            out["freshness"] = format_duration(self.freshness)
        if self.partition_columns:
            out["partition_columns"] = list(self.partition_columns)
        if self.checks is not None:
            out["checks"] = self.checks.to_dict()
        if self.entity_key_types:
            out["entity_key_types"] = {
                k: v.simple_string() for k, v in self.entity_key_types.items()
            }
        if self.materialization_schedule is not None:
            out["materialization_schedule"] = self.materialization_schedule
        if self.source is not None:
            out["source"] = self.source.to_dict()
        if self.event_source is not None:
            out["event_source"] = self.event_source.to_dict()
            out["aggregations"] = [a.to_dict() for a in self.aggregations]
            del out["features"]  # they follow from the aggregations
        if self.composites:
            out["composites"] = [c.to_dict() for c in self.composites]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureGroupSchema:
        """Read the YAML form of a group."""
        check_mapping(
            data,
            "A feature group",
            "write the group as 'name: ..., entity_keys: [...], features: [...]'.",
            got=type(data).__name__,
        )
        allowed = {f.name for f in fields(cls)}
        check_keys(data, allowed, f"Feature group '{data.get('name')}'")
        keys_raw = data.get("entity_keys") or []
        keys: list[str] = []
        key_types: dict[str, Any] = dict(data.get("entity_key_types") or {})
        for item in [keys_raw] if isinstance(keys_raw, str) else keys_raw:
            if isinstance(item, Mapping):
                keys.append(item.get("name"))  # type: ignore[arg-type]
                if item.get("type"):
                    key_types[str(item.get("name"))] = item["type"]
            else:
                keys.append(item)
        return cls(
            name=data.get("name"),  # type: ignore[arg-type]
            entity_keys=keys,
            features=data.get("features") or [],
            version=data.get("version", 1),
            timestamp_key=data.get("timestamp_key", DEFAULT_TIMESTAMP_KEY),
            description=data.get("description", ""),
            owner=data.get("owner"),
            tags=data.get("tags"),
            ttl=data.get("ttl"),
            partition_columns=data.get("partition_columns") or (),
            entity_key_types=key_types,
            freshness=data.get("freshness"),
            checks=data.get("checks"),
            materialization_schedule=data.get("materialization_schedule"),
            source=data.get("source"),
            event_source=data.get("event_source"),
            aggregations=data.get("aggregations") or (),
            composites=data.get("composites") or (),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> FeatureGroupSchema:
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """A stable hash of the schema (equal schemas, equal fingerprints)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
