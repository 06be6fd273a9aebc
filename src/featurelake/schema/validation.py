"""Check a Spark DataFrame against a feature group schema before it is written.

Structural checks (columns, types) look only at the DataFrame's schema and run no Spark job.
Row checks (null keys and timestamps, min/max, allowed values, non-nullable features, duplicate
key+timestamp) are compiled into the write itself: each checked column is wrapped in
`raise_error` for violating rows, so a valid batch is read once and an invalid one fails the
write before Delta commits anything. Only on failure does `explain_violations` run the extra
jobs that count and sample the offending rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurelake.errors import SchemaValidationError
from featurelake.schema.keys import INGESTED_AT
from featurelake.schema.model import FeatureGroupSchema
from featurelake.schema.types import DataType, SqlType, is_safe_cast
from featurelake.times import is_ntz, ntz_as_utc

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

VIOLATION_MARKER = "FEATURELAKE_ROW_CHECK_FAILED"
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class RowRule:
    """One row-level rule: a column, what it demands, and the condition of a violation."""

    column: str
    rule: str
    violated: Column


def conform_columns(
    df: DataFrame, schema: FeatureGroupSchema, key_types: Mapping[str, SqlType] | None = None
) -> DataFrame:
    """Select the group's columns in order, applying only lossless casts.

    Entity keys take their declared type, else the one in `key_types` (an existing table's),
    else any atomic type.

    Raises SchemaValidationError naming missing/extra columns or lossy type changes.
    """
    from pyspark.sql import functions as F

    present = {field.name: field for field in df.schema.fields}
    present.pop(INGESTED_AT, None)
    check_columns(schema, present)
    expected = schema.columns
    targets = column_targets(schema, key_types)
    selected: list[Column] = []
    for name in expected:
        target = targets[name]
        try:
            actual = SqlType.from_spark(present[name].dataType)
        except SchemaValidationError:
            actual = None
        if target is None:
            if actual is None or not actual.is_atomic:
                shown = present[name].dataType.simpleString()
                raise key_type_error(schema, name, shown)
            selected.append(F.col(name))
            continue
        if is_ntz(present[name].dataType) and target == actual:
            selected.append(ntz_as_utc(F.col(name)).alias(name))  # wall-clock times mean UTC
        elif actual == target:
            selected.append(F.col(name))
        elif actual is not None and is_safe_cast(actual, target):
            selected.append(F.col(name).cast(target.to_spark()).alias(name))
        else:
            shown = actual.simple_string() if actual else present[name].dataType.simpleString()
            raise lossy_type_error(schema, name, shown, target)
    return df.select(*selected)


def column_targets(
    schema: FeatureGroupSchema, key_types: Mapping[str, SqlType] | None = None
) -> dict[str, SqlType | None]:
    """The type each column of a batch is conformed to, in the group's column order (None: an
    entity key neither declared nor in `key_types`, which takes any atomic type)."""
    return {
        **{
            k: schema.entity_key_types.get(k) or (key_types or {}).get(k)
            for k in schema.entity_keys
        },
        schema.timestamp_key: SqlType(DataType.TIMESTAMP),
        **{f.name: f.data_type for f in schema.features},
    }


def check_columns(schema: FeatureGroupSchema, present: Collection[str]) -> None:
    """Raise `columns_error` unless the batch's columns (`_ingested_at` aside) are the group's."""
    expected = schema.columns
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    if missing or extra:
        raise columns_error(schema, missing, extra)


def columns_error(
    schema: FeatureGroupSchema, missing: list[str], extra: list[str]
) -> SchemaValidationError:
    """The error of a batch whose columns are not the group's."""
    parts = []
    if missing:
        parts.append(f"missing column(s) {missing}")
    if extra:
        parts.append(f"unexpected column(s) {extra}")
    return SchemaValidationError(
        f"The batch for group '{schema.name}' v{schema.version} has {' and '.join(parts)}.",
        fix="select exactly the group's columns "
        f"{list(schema.columns)}; to add a feature, register it first (new nullable features are "
        "allowed in place).",
        group=schema.name,
        missing=missing,
        extra=extra,
    )


def key_type_error(schema: FeatureGroupSchema, name: str, shown: str) -> SchemaValidationError:
    """The error of an entity key column whose type cannot be a key."""
    return SchemaValidationError(
        f"Entity key '{name}' of group '{schema.name}' has the type {shown}, which cannot be a "
        "key.",
        fix="use an atomic type such as bigint or string for entity keys.",
        group=schema.name,
        column=name,
    )


def lossy_type_error(
    schema: FeatureGroupSchema, name: str, shown: str, target: SqlType
) -> SchemaValidationError:
    """The error of a column whose type does not convert to the schema's without loss."""
    return SchemaValidationError(
        f"Column '{name}' of the batch for group '{schema.name}' is {shown}, but the "
        f"schema says {target}; converting would lose data.",
        fix=f"cast '{name}' to {target} yourself where you know it is safe, or bump "
        "the group version to change the feature's type.",
        group=schema.name,
        column=name,
    )


@dataclass(frozen=True)
class RuleSpec:
    """A row rule as data, for any engine: `kind` is `null`, `min`, `max`, `allowed` or
    `duplicate` (entity keys + event time repeated), `value` its bound or allowed values."""

    column: str
    rule: str
    kind: str
    value: Any = None


def rule_specs(schema: FeatureGroupSchema, *, unique_key_time: bool) -> list[RuleSpec]:
    """The row rules of a schema (and the duplicate rule for merge batches), in check order."""
    specs = [RuleSpec(k, "entity key must not be null", "null") for k in schema.entity_keys]
    ts = schema.timestamp_key
    specs.append(RuleSpec(ts, "event timestamp must not be null", "null"))
    for feature in schema.features:
        name = feature.name
        if not feature.nullable:
            specs.append(RuleSpec(name, "must not be null (nullable: false)", "null"))
        if feature.min_value is not None:
            specs.append(
                RuleSpec(name, f"must be >= {feature.min_value} (min)", "min", feature.min_value)
            )
        if feature.max_value is not None:
            specs.append(
                RuleSpec(name, f"must be <= {feature.max_value} (max)", "max", feature.max_value)
            )
        if feature.allowed_values is not None:
            allowed = list(feature.allowed_values)
            specs.append(
                RuleSpec(name, f"must be one of {allowed} (allowed_values)", "allowed", allowed)
            )
    if unique_key_time:
        specs.append(
            RuleSpec(
                ts,
                "entity key + timestamp must be unique within a merge batch "
                f"({list(schema.entity_keys)} + {ts})",
                "duplicate",
            )
        )
    return specs


def row_rules(schema: FeatureGroupSchema, *, unique_key_time: bool) -> list[RowRule]:
    """The row rules of a schema (and the duplicate rule for merge batches)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def violated(spec: RuleSpec) -> Column:
        column = F.col(spec.column)
        if spec.kind == "null":
            return column.isNull()
        if spec.kind == "min":
            return column < F.lit(spec.value)
        if spec.kind == "max":
            return column > F.lit(spec.value)
        if spec.kind == "allowed":
            return column.isNotNull() & ~column.isin(spec.value)
        window = Window.partitionBy(*schema.entity_keys, schema.timestamp_key)
        return F.count(F.lit(1)).over(window) > 1

    return [
        RowRule(spec.column, spec.rule, violated(spec))
        for spec in rule_specs(schema, unique_key_time=unique_key_time)
    ]


def apply_row_checks(df: DataFrame, rules: list[RowRule]) -> DataFrame:
    """Wrap each checked column so a violating row fails the job that writes it."""
    from pyspark.sql import functions as F

    by_column: dict[str, list[RowRule]] = {}
    for rule in rules:
        by_column.setdefault(rule.column, []).append(rule)
    columns: list[Column] = []
    for name in df.columns:
        expression: Column = F.col(name)
        for rule in by_column.get(name, []):
            message = F.lit(f"{VIOLATION_MARKER}: column '{name}' {rule.rule}")
            expression = F.when(rule.violated, F.raise_error(message)).otherwise(expression)
        columns.append(expression.alias(name) if by_column.get(name) else F.col(name))
    return df.select(*columns)


def is_row_check_failure(error: BaseException) -> bool:
    """True when a Spark error came from `apply_row_checks`."""
    return VIOLATION_MARKER in str(error)


def explain_violations(
    df: DataFrame, schema: FeatureGroupSchema, rules: list[RowRule]
) -> SchemaValidationError:
    """Count and sample the rows breaking each rule (runs Spark jobs; call only on failure)."""
    from pyspark.sql import functions as F

    flagged = df.select(
        "*",
        *[F.coalesce(rule.violated, F.lit(False)).alias(f"_v{i}") for i, rule in enumerate(rules)],
    )
    counts = flagged.select(
        *[F.sum(F.col(f"_v{i}").cast("int")).alias(f"r{i}") for i in range(len(rules))]
    ).collect()[0]
    broken = [
        (i, rule, int(counts[f"r{i}"] or 0)) for i, rule in enumerate(rules) if counts[f"r{i}"]
    ]
    if not broken:
        return SchemaValidationError(
            f"The batch for group '{schema.name}' failed a row check that could not be "
            "reproduced (the input changed between reads).",
            fix="write from a deterministic or cached DataFrame.",
            group=schema.name,
        )
    index, rule, _ = broken[0]
    sample = [
        row.asDict()
        for row in flagged.where(F.col(f"_v{index}"))
        .select(*shown_columns(schema, rule.column))
        .limit(SAMPLE_ROWS)
        .collect()
    ]
    return violations_error(schema, [(r.column, r.rule, n) for _, r, n in broken], sample)


def shown_columns(schema: FeatureGroupSchema, column: str) -> list[str]:
    """The columns of the offending rows an error shows: keys, event time, the rule's column."""
    shown = [*schema.entity_keys, schema.timestamp_key]
    return shown if column in shown else [*shown, column]


def violations_error(
    schema: FeatureGroupSchema,
    broken: list[tuple[str, str, int]],
    sample: list[dict[str, Any]],
) -> SchemaValidationError:
    """The error of a batch breaking row rules: `broken` is (column, rule, rows) per broken
    rule in check order, `sample` up to SAMPLE_ROWS offending rows of the first."""
    column, rule, count = broken[0]
    others = "".join(f"; also column '{c}' {r}: {n} row(s)" for c, r, n in broken[1:])
    return SchemaValidationError(
        f"{count} row(s) of the batch for group '{schema.name}' break a rule: column "
        f"'{column}' {rule}. Offending rows (up to {SAMPLE_ROWS}): {sample}{others}.",
        fix="correct or filter those rows and write the batch again; nothing was written.",
        group=schema.name,
        column=column,
        rule=rule,
        count=count,
        rows=sample,
        violations={f"{c}: {r}": n for c, r, n in broken},
    )
