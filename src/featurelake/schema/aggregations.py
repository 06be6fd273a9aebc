"""Declarations of windowed aggregations and composite features (pure data, no Spark).

An aggregation group names an event `source` and a list of `Aggregation`s; each
(column, function, window) becomes a feature named `{column}_{function}_{window}` (or the
declared `name`). A window `w` at time `t` covers the events with `t - w < event_ts <= t`.
A `CompositeFeature` is an expression over other features of the same request
(`featurelake.schema.expressions`), kept with the references it reads (its lineage).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from featurelake.errors import SchemaValidationError
from featurelake.schema.durations import parse_duration
from featurelake.schema.expressions import CompiledExpression, compile_expression, parse_spark_sql
from featurelake.schema.keys import check_identifier, check_keys, check_mapping
from featurelake.schema.types import SqlType

AGGREGATION_FUNCTIONS = (
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "last",
    "approx_count_distinct",
)
"""`stddev` is the sample standard deviation (null under two values); `last` is the latest
non-null value in the window; `approx_count_distinct` is a HyperLogLog estimate (relative
standard error about 1.6%)."""

_TYPED_BY_COLUMN = ("min", "max", "last")
_FIXED_TYPES = {
    "count": "bigint",
    "approx_count_distinct": "bigint",
    "sum": "double",
    "avg": "double",
    "stddev": "double",
}


def window_label(window: timedelta) -> str:
    """A window as feature names spell it: `30m`, `1h`, `7d`, `30d` (days, not weeks)."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_GROUP_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(@\d+)?$")
_AGGREGATION_FORM = "write '- {column: amount, function: sum, windows: [1d, 7d]}'."
_AGGREGATION_KEYS = {"column", "function", "windows", "window", "filter", "name", "type"}


@dataclass(frozen=True)
class AggregationSource:
    """Where the events come from: a registered `group` (`name` or `name@version`), a
    catalog `table`, or a Delta `path`."""

    kind: str  # "group", "table" or "path"
    name: str

    @classmethod
    def parse(cls, value: Any) -> AggregationSource:
        if isinstance(value, AggregationSource):
            return value
        if isinstance(value, Mapping) and len(value) == 1:
            kind, name = next(iter(value.items()))
            if kind in ("group", "table", "path") and isinstance(name, str) and name.strip():
                if kind == "group" and not _GROUP_REF.match(name):
                    raise SchemaValidationError(
                        f"The source group '{name}' is not a group name.",
                        fix="write 'event_source: {group: purchases}' or 'purchases@2'.",
                    )
                return cls(str(kind), name.strip())
        if isinstance(value, str) and value.strip():
            text = value.strip()
            if _GROUP_REF.match(text):
                return cls("group", text)
            if "/" in text or ":" in text:
                return cls("path", text)
            return cls("table", text)
        raise SchemaValidationError(
            f"The aggregation source {value!r} is not a group, table or path.",
            fix="write 'event_source: purchases' (a registered group), "
            "'event_source: {table: db.events}' "
            "or 'event_source: {path: /lake/silver/events}'.",
        )

    def to_dict(self) -> dict[str, str]:
        return {self.kind: self.name}


@dataclass(frozen=True)
class Aggregation:
    """One aggregated column: a function over one or more windows, with an optional filter.

    `column="*"` counts events (function `count` only). `filter` is a Spark SQL predicate
    over the source's columns; events where it is not true are left out. `type` is the result
    type of min, max and last (default double).
    """

    column: str
    function: str
    windows: tuple[timedelta, ...]
    filter: str | None = None
    name: str | None = None
    type: SqlType | None = None

    def __init__(
        self,
        column: str,
        function: str,
        windows: Iterable[str | int | float | timedelta] | str | timedelta,
        filter: str | None = None,
        name: str | None = None,
        type: str | SqlType | None = None,
    ) -> None:
        what = f"aggregation of '{column}'"
        function = str(function).lower()
        if function not in AGGREGATION_FUNCTIONS:
            raise SchemaValidationError(
                f"The {what} has the function '{function}'.",
                fix="use one of " + ", ".join(AGGREGATION_FUNCTIONS) + ".",
            )
        if column == "*":
            if function != "count":
                raise SchemaValidationError(
                    f"The aggregation of '*' uses {function}; only count can count events.",
                    fix="name a column to aggregate, or use function: count.",
                )
        else:
            check_identifier(column, "aggregated column")
        items = [windows] if isinstance(windows, str | timedelta | int | float) else list(windows)
        if not items:
            raise SchemaValidationError(
                f"The {what} ({function}) has no windows.",
                fix="add 'windows: [1d, 7d]'.",
            )
        parsed: list[timedelta] = []
        for item in items:
            window = parse_duration(item, what=f"window of the {what}")
            assert window is not None
            if window % timedelta(seconds=1):
                raise SchemaValidationError(
                    f"The window {item!r} of the {what} is not a whole number of seconds.",
                    fix="use windows such as 30m, 1h, 1d or 7d.",
                )
            if window in parsed:
                raise SchemaValidationError(
                    f"The {what} ({function}) lists the window {window_label(window)} twice.",
                    fix="list each window once.",
                )
            parsed.append(window)
        if filter is not None:
            _check_filter(filter, what)
        if name is not None:
            check_identifier(name, "aggregation")
        sql_type = None
        if type is not None:
            if function not in _TYPED_BY_COLUMN:
                raise SchemaValidationError(
                    f"The {what} ({function}) declares a type, but {function} always gives "
                    f"{_FIXED_TYPES[function]}.",
                    fix="remove 'type' (it applies to min, max and last).",
                )
            sql_type = SqlType.parse(type)
            if not sql_type.is_atomic:
                raise SchemaValidationError(
                    f"The {what} ({function}) has the type {sql_type}.",
                    fix="use an atomic type such as double, bigint or timestamp.",
                )
        set_ = object.__setattr__
        set_(self, "column", column)
        set_(self, "function", function)
        set_(self, "windows", tuple(parsed))
        set_(self, "filter", filter)
        set_(self, "name", name)
        set_(self, "type", sql_type)

    @property
    def result_type(self) -> SqlType:
        if self.function in _FIXED_TYPES:
            return SqlType.parse(_FIXED_TYPES[self.function])
        return self.type or SqlType.parse("double")

    def feature_name(self, window: timedelta) -> str:
        """`{column}_{function}_{window}`; a declared name is used as is for one window and
        as the prefix `{name}_{window}` for several."""
        label = window_label(window)
        if self.name:
            return self.name if len(self.windows) == 1 else f"{self.name}_{label}"
        column = "events" if self.column == "*" else self.column
        return f"{column}_{self.function}_{label}"

    def outputs(self) -> list[tuple[str, timedelta]]:
        """(feature name, window) for each window."""
        return [(self.feature_name(w), w) for w in self.windows]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "column": self.column,
            "function": self.function,
            "windows": [window_label(w) for w in self.windows],
        }
        if self.filter is not None:
            out["filter"] = self.filter
        if self.name is not None:
            out["name"] = self.name
        if self.type is not None:
            out["type"] = self.type.simple_string()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Aggregation:
        check_mapping(data, "An aggregation", _AGGREGATION_FORM)
        check_keys(
            data,
            _AGGREGATION_KEYS,
            f"The aggregation of '{data.get('column')}'",
            shown=_AGGREGATION_KEYS - {"window"},
        )
        for key in ("column", "function"):
            if not data.get(key):
                raise SchemaValidationError(
                    f"The aggregation {dict(data)} has no '{key}'.", fix=_AGGREGATION_FORM
                )
        return cls(
            column=str(data["column"]),
            function=str(data["function"]),
            windows=data.get("windows", data.get("window")) or [],
            filter=data.get("filter"),
            name=data.get("name"),
            type=data.get("type"),
        )


def _check_filter(text: Any, what: str) -> None:
    """A filter is one SQL predicate (checked for syntax here, against columns in Spark)."""
    from sqlglot import exp

    tree = parse_spark_sql(
        text,
        "filter",
        f"the {what}",
        empty_fix="write a Spark SQL predicate such as \"status = 'paid'\", or remove it.",
        invalid_fix="write a single Spark SQL predicate such as \"status = 'paid'\".",
    )
    if isinstance(tree, exp.Query) or any(isinstance(n, exp.Query) for n in tree.walk()):
        raise SchemaValidationError(
            f"The filter '{text}' of the {what} contains a query.",
            fix="write a predicate over the source's own columns, without SELECT.",
        )
    if any(isinstance(n, exp.AggFunc | exp.Window) for n in tree.walk()):
        raise SchemaValidationError(
            f"The filter '{text}' of the {what} uses an aggregate or window function.",
            fix="write a predicate on each event's own columns.",
        )


@dataclass(frozen=True)
class CompositeFeature:
    """A feature computed from other features of the same request by an expression.

    References are `feature` (a feature of the same group) or `group.feature`. They are
    requested along with the composite and dropped from the result unless asked for too.
    """

    name: str
    expression: str
    source_features: tuple[str, ...]
    description: str = ""

    def __init__(
        self,
        name: str,
        expression: str,
        source_features: Iterable[str] | None = None,
        description: str = "",
    ) -> None:
        check_identifier(name, "composite feature")
        compiled = compile_expression(expression, what=f"composite feature '{name}'")
        if source_features is not None:
            declared = tuple(str(s) for s in source_features)
            if set(declared) != set(compiled.references):
                raise SchemaValidationError(
                    f"Composite feature '{name}' declares source_features {list(declared)} but "
                    f"its expression reads {list(compiled.references)}.",
                    fix="list exactly the features the expression uses, or leave "
                    "source_features out (it is derived from the expression).",
                )
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "expression", expression)
        set_(self, "source_features", compiled.references)
        set_(self, "description", description or "")

    @property
    def compiled(self) -> CompiledExpression:
        """The checked expression (parsed again; cheap, and keeps the schema plain data)."""
        return compile_expression(self.expression, what=f"composite feature '{self.name}'")

    @property
    def result_type(self) -> SqlType:
        return SqlType.parse(self.compiled.result_type)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "expression": self.expression,
            "source_features": list(self.source_features),
        }
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompositeFeature:
        allowed = {"name", "expression", "source_features", "description"}
        if not isinstance(data, Mapping) or set(data) - allowed:
            extra = sorted(set(data) - allowed) if isinstance(data, Mapping) else data
            raise SchemaValidationError(
                f"The composite feature {data!r} is not a mapping of {sorted(allowed)} "
                f"(unknown: {extra}).",
                fix="write '- {name: spend_per_order, expression: \"a / NULLIF(b, 0)\"}'.",
            )
        return cls(
            name=data.get("name"),  # type: ignore[arg-type]
            expression=data.get("expression"),  # type: ignore[arg-type]
            source_features=data.get("source_features"),
            description=data.get("description", ""),
        )


def check_composites(
    group: str,
    feature_names: Iterable[str],
    composites: Iterable[CompositeFeature | Mapping[str, Any]],
) -> tuple[CompositeFeature, ...]:
    """Parsed composites; same-group references must be features of the group."""
    names = set(feature_names)
    parsed = tuple(
        c if isinstance(c, CompositeFeature) else CompositeFeature.from_dict(c) for c in composites
    )
    seen: set[str] = set()
    for composite in parsed:
        if composite.name in names or composite.name in seen:
            raise SchemaValidationError(
                f"Group '{group}' has two features named '{composite.name}'.",
                fix="give the composite feature its own name.",
            )
        seen.add(composite.name)
    for composite in parsed:
        for ref in composite.source_features:
            owner, _, feature = ref.rpartition(".")
            if owner in ("", group) and feature not in names:
                kind = "a composite" if feature in seen else "not a feature of the group"
                raise SchemaValidationError(
                    f"Composite feature '{composite.name}' of group '{group}' reads '{ref}', "
                    f"which is {kind}.",
                    fix=f"use features of '{group}' ({', '.join(sorted(names))}) or "
                    "'other_group.feature'; composites cannot read composites.",
                )
    return parsed
