"""Batch-level quality rules, evaluated in one Spark aggregation, and the write-time gate.

Rules are declared in the group schema (`checks:` in YAML, `featurelake.schema.model`).
`evaluate_checks` runs every rule over a DataFrame in one job and returns a `CheckReport`;
sample rows are fetched only for rules that fail. `QualityGate` is the write hook: on a failing
batch it raises (`fail`), records and logs (`warn`), or moves the offending rows into the
group's quarantine side table and lets the rest through (`quarantine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.errors import SchemaValidationError
from featurelake.registry import Registry, group_key, side_location
from featurelake.schema.model import CheckAction, FeatureGroupSchema, QualityRule
from featurelake.times import spark_time_literal, spark_utc, utc_now

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

CHECKS = "checks"
SAMPLE_ROWS = 5
ROW_RULES = ("not_null", "range", "allowed_values", "max_null_rate", "unique_keys", "sql")
_DUP = "__fl_dup_count"


class QualityCheckError(SchemaValidationError):
    """A batch broke a quality rule of a group whose checks say `on_write: fail`."""

    def __init__(self, report: CheckReport) -> None:
        first = report.failed[0]
        super().__init__(
            f"The batch for group '{report.group}' v{report.version} fails quality rule(s) "
            f"{[r.rule for r in report.failed]}: {first.message}. Sample rows: {first.sample}.",
            fix="correct or filter those rows and write again (nothing was written), or set "
            "checks.on_write to 'warn' or 'quarantine' in the group's YAML.",
            group=report.group,
            report=report,
        )
        self.report = report


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule over one DataFrame."""

    rule: str
    type: str
    feature: str | None
    passed: bool
    failing_rows: int
    total_rows: int
    observed: float | None
    message: str
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckReport:
    """Every rule's result for one batch or table version."""

    group: str
    version: int
    total_rows: int
    results: tuple[RuleResult, ...]
    checked_at: str
    delta_version: int | None = None
    action: str | None = None
    quarantined_rows: int = 0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["results"] = [asdict(r) for r in self.results]
        out["passed"] = self.passed
        return out


def group_rules(schema: FeatureGroupSchema) -> list[QualityRule]:
    """The declared rules, plus a freshness rule from the group's `freshness` if none is set."""
    rules = list(schema.checks.rules) if schema.checks else []
    if schema.freshness is not None and not any(r.type == "freshness" for r in rules):
        rules.append(QualityRule("freshness", max_age=schema.freshness))
    return rules


def violation(rule: QualityRule, schema: FeatureGroupSchema) -> Column | None:
    """The condition of a row that breaks `rule` (None for table-level rules: freshness)."""
    from pyspark.sql import functions as F

    col = F.col(rule.feature) if rule.feature else None
    if rule.type in ("not_null", "max_null_rate"):
        assert col is not None
        return col.isNull()
    if rule.type == "range":
        assert col is not None
        below = col < F.lit(rule.min) if rule.min is not None else F.lit(False)
        above = col > F.lit(rule.max) if rule.max is not None else F.lit(False)
        return col.isNotNull() & (below | above)
    if rule.type == "allowed_values":
        assert col is not None and rule.values is not None
        return col.isNotNull() & ~col.isin(list(rule.values))
    if rule.type == "unique_keys":
        return F.col(_DUP) > 1
    if rule.type == "sql":
        assert rule.expr is not None
        return ~F.coalesce(F.expr(rule.expr).cast("boolean"), F.lit(False))
    return None


def _not_evaluable(
    df: DataFrame,
    schema: FeatureGroupSchema,
    rule_aggs: Sequence[tuple[QualityRule | None, Column]],
    error: Exception,
) -> SchemaValidationError:
    """The typed error for rules Spark cannot evaluate, naming each such rule and the type of
    the column it reads (found by analysing each rule's aggregate alone: no job runs)."""
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    broken: list[str] = []
    for rule, agg in rule_aggs:
        try:
            df.agg(agg).schema  # noqa: B018 - analysis only
        except Exception:
            if rule is None:
                continue
            column = schema.timestamp_key if rule.type == "freshness" else rule.feature
            where = f" on column '{column}' of type {types.get(column, '?')}" if column else ""
            broken.append(f"{rule.type} rule '{rule.name}'{where}")
    reason = str(error).strip().splitlines()[0]
    if not broken:
        return SchemaValidationError(
            f"The quality rules of group '{schema.name}' could not be evaluated: {reason}",
            fix=f"check the rules against the group's columns {types}.",
            group=schema.name,
        )
    return SchemaValidationError(
        f"The quality rules of group '{schema.name}' could not be evaluated: "
        f"{'; '.join(broken)} cannot be computed ({reason})",
        fix="correct those rules in the group schema, or give the column a type the rule "
        "supports (range: numbers, dates and times; freshness: a timestamp event time; sql: an "
        "expression valid for the group's columns).",
        group=schema.name,
        rules=broken,
    )


def _row_violation(rule: QualityRule, schema: FeatureGroupSchema) -> Column:
    """The violation condition with null counted as a violation (row rules only)."""
    from pyspark.sql import functions as F

    condition = violation(rule, schema)
    assert condition is not None, rule.type
    return F.coalesce(condition, F.lit(True))


def _flagged(df: DataFrame, schema: FeatureGroupSchema, rules: Sequence[QualityRule]) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if any(r.type == "unique_keys" for r in rules):
        window = Window.partitionBy(*schema.entity_keys, schema.timestamp_key)
        return df.withColumn(_DUP, F.count(F.lit(1)).over(window))
    return df


def evaluate_checks(
    df: DataFrame,
    schema: FeatureGroupSchema,
    *,
    rules: Sequence[QualityRule] | None = None,
    now: datetime | None = None,
    delta_version: int | None = None,
) -> CheckReport:
    """Run the group's rules (or `rules`) over `df`: one aggregation, samples only on failure.

    Null values pass `range`/`allowed_values` (use `not_null`); a `sql` rule fails rows where
    its expression is false or null. Freshness compares the newest event with `now` (default:
    the current time).
    """
    from pyspark.sql import functions as F

    chosen = list(group_rules(schema) if rules is None else rules)
    flagged = spark_utc(_flagged(df, schema, chosen))
    conditions = [violation(rule, schema) for rule in chosen]
    reference = spark_time_literal(now) if now is not None else F.current_timestamp()
    newest = F.max(F.col(schema.timestamp_key).cast("timestamp"))
    rule_aggs: list[tuple[QualityRule | None, Column]] = [
        (None, F.count(F.lit(1)).alias("__rows")),
        (
            next((r for r in chosen if r.type == "freshness"), None),
            ((F.unix_micros(reference) - F.unix_micros(newest)) / 1e6).alias("__age"),
        ),
    ]
    for i, (rule, condition) in enumerate(zip(chosen, conditions, strict=True)):
        if condition is not None:
            count = F.sum(F.coalesce(condition, F.lit(True)).cast("long")).alias(f"v{i}")
            rule_aggs.append((rule, count))
    try:
        row = flagged.agg(*(agg for _, agg in rule_aggs)).collect()[0].asDict()
    except Exception as error:
        raise _not_evaluable(flagged, schema, rule_aggs, error) from error
    total = int(row["__rows"])
    age = row["__age"]
    shown = [*schema.entity_keys, schema.timestamp_key]
    results = []
    for i, (rule, condition) in enumerate(zip(chosen, conditions, strict=True)):
        bad = int(row.get(f"v{i}") or 0)
        observed: float | None
        if rule.type == "max_null_rate":
            observed = bad / total if total else 0.0
            assert rule.max_rate is not None
            passed = observed <= rule.max_rate
            message = f"null rate of '{rule.feature}' is {observed:.4f} (max {rule.max_rate})"
        elif rule.type == "freshness":
            assert rule.max_age is not None
            limit = rule.max_age.total_seconds()
            observed = None if age is None else float(age)
            passed = observed is not None and observed <= limit
            message = (
                "no events at all"
                if observed is None
                else f"newest event is {observed / 3600:.2f}h old (max {limit / 3600:.2f}h)"
            )
            bad = 0 if passed else total
        else:
            observed = bad / total if total else 0.0
            passed = bad == 0
            message = f"{bad} of {total} row(s) break {_describe(rule)}"
        sample: list[dict[str, Any]] = []
        if not passed and condition is not None:
            columns = (
                [*shown, rule.feature] if rule.feature and rule.feature not in shown else shown
            )
            sample = [
                {k: _plain(v) for k, v in r.asDict().items()}
                for r in flagged.where(F.coalesce(condition, F.lit(True)))
                .select(*columns)
                .limit(SAMPLE_ROWS)
                .collect()
            ]
        results.append(
            RuleResult(
                rule=rule.name,
                type=rule.type,
                feature=rule.feature,
                passed=passed,
                failing_rows=bad,
                total_rows=total,
                observed=observed,
                message=message,
                sample=sample,
            )
        )
    return CheckReport(
        group=schema.name,
        version=schema.version,
        total_rows=total,
        results=tuple(results),
        checked_at=utc_now().isoformat(),
        delta_version=delta_version,
    )


def _describe(rule: QualityRule) -> str:
    if rule.type == "not_null":
        return f"not_null on '{rule.feature}'"
    if rule.type == "range":
        return f"range [{rule.min}, {rule.max}] on '{rule.feature}'"
    if rule.type == "allowed_values":
        return f"allowed_values {list(rule.values or ())} on '{rule.feature}'"
    if rule.type == "unique_keys":
        return "unique entity keys per timestamp"
    if rule.type == "sql":
        return f"the expression `{rule.expr}`"
    return rule.type


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def record_report(registry: Registry, report: CheckReport) -> None:
    """Store a check report as a `checks` event of `group@version`."""
    registry.append_event(CHECKS, group_key(report.group, report.version), report.to_dict())


def check_history(registry: Registry, group: str, version: int) -> list[dict[str, Any]]:
    """Stored check reports of a group version, oldest first (as dicts)."""
    return registry.events(CHECKS, group_key(group, version))


class QualityGate:
    """The write hook: checks each batch and applies the group's `checks.on_write` action.

    Register it on a store with `attach_quality(store)`; groups without rules (and without a
    `freshness`) are passed through without running any job.
    """

    def __init__(self, registry: Registry, *, record: bool = True) -> None:
        self.registry = registry
        self.record = record
        self.last_report: CheckReport | None = None

    def passes_through(self, schema: FeatureGroupSchema, mode: str) -> bool:
        """True when the gate has no rule for this write (it needs no batch, so a small write
        may skip Spark)."""
        return not self._rules(schema, mode)

    def _rules(self, schema: FeatureGroupSchema, mode: str) -> list[QualityRule]:
        rules = group_rules(schema)
        if mode == "backfill":  # old events are the point of a backfill: skip freshness
            return [r for r in rules if r.type != "freshness"]
        return rules

    def __call__(self, schema: FeatureGroupSchema, batch: DataFrame, mode: str) -> DataFrame:
        from pyspark.sql import functions as F

        rules = self._rules(schema, mode)
        if not rules:
            return batch
        action = schema.checks.on_write if schema.checks else CheckAction.WARN
        report = evaluate_checks(batch, schema, rules=rules)
        quarantined = 0
        result = batch
        if not report.passed and action is CheckAction.QUARANTINE:
            failing = {r.rule for r in report.failed}
            chosen = [r for r in rules if r.name in failing and r.type in ROW_RULES]
            if chosen:
                flagged = _flagged(batch, schema, chosen)
                tags = F.filter(
                    F.array(*[F.when(_row_violation(r, schema), F.lit(r.name)) for r in chosen]),
                    lambda x: x.isNotNull(),
                )
                marked = flagged.withColumn("_failed_rules", tags)
                bad = marked.where(F.size("_failed_rules") > 0).select(
                    *batch.columns,
                    "_failed_rules",
                    F.lit(schema.version).alias("_group_version"),
                    F.lit(mode).alias("_write_mode"),
                    F.current_timestamp().alias("_quarantined_at"),
                )
                from featurelake.quality.tables import append_side_table

                location = side_location(self.registry.config, "quarantine", schema.name)
                append_side_table(bad, location)
                quarantined = bad.count()
                result = marked.where(F.size("_failed_rules") == 0).select(*batch.columns)
                logger.warning(
                    "group {} v{}: rows breaking {} moved to {}",
                    schema.name,
                    schema.version,
                    sorted(failing),
                    location,
                )
        report = CheckReport(
            **{
                **{k: getattr(report, k) for k in report.__dataclass_fields__},
                "action": action.value,
                "quarantined_rows": quarantined,
            }
        )
        self.last_report = report
        if self.record:
            record_report(self.registry, report)
        if report.passed:
            return result
        if action is CheckAction.FAIL:
            raise QualityCheckError(report)
        table_level = [r for r in report.failed if r.type not in ROW_RULES]
        if action is CheckAction.WARN or table_level:
            # quarantine cannot set rows aside for a table-level rule (freshness): warn instead
            shown = report.failed if action is CheckAction.WARN else table_level
            logger.warning(
                "group {} v{} fails quality rule(s) {} (on_write: {}): {}",
                schema.name,
                schema.version,
                [r.rule for r in shown],
                action.value,
                shown[0].message,
            )
        return result


def quarantined_rows(registry: Registry, group: str, spark: Any = None) -> DataFrame:
    """The quarantine side table of a group (every version's set-aside rows)."""
    from featurelake.quality.tables import read_version

    return read_version(
        spark or registry.spark, side_location(registry.config, "quarantine", group)
    )
