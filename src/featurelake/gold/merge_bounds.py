"""Bounds of a MERGE's source rows, written as target-only conditions so Delta skips files.

Delta prunes the target files of a MERGE with the conjuncts of its ON condition that name only
target columns (compared against the file statistics of the log). A change set's smallest and
largest entity key and event time are such conjuncts: every target row a source row can match
lies within them, so adding them never changes which rows match, and a change that touches only
the newest events (or a narrow key range) reads and rewrites only the files holding them.

Literals are formatted here, typed exactly as the column (no cast for the analyzer to add,
which would hide them from Delta's file skipping), from values Spark computed: integers,
dates, timestamps (as UTC microseconds) and strings (quoted, backslashes escaped).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.registry import quote_identifier
from featurelake.times import sql_time_literal

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType

_INTEGER_SUFFIX = {"ByteType": "Y", "ShortType": "S", "IntegerType": "", "LongType": "L"}
_EPOCH = datetime(1970, 1, 1)


def _kind(data_type: DataType) -> str | None:
    name = type(data_type).__name__
    if name in _INTEGER_SUFFIX or name in ("StringType", "DateType", "TimestampType"):
        return name
    return None


def _bound_value(kind: str, column: str) -> Any:
    """The Spark expression whose min/max is collected for a column of `kind`."""
    from pyspark.sql import functions as F

    if kind == "TimestampType":
        return F.unix_micros(F.col(column))
    if kind == "DateType":
        return F.date_format(F.col(column), "yyyy-MM-dd")
    return F.col(column)


def _literal(kind: str, value: Any, escaped_literals: bool) -> str | None:
    if kind in _INTEGER_SUFFIX:
        return f"{int(value)}{_INTEGER_SUFFIX[kind]}"
    if kind == "TimestampType":
        return sql_time_literal(_EPOCH + timedelta(microseconds=int(value)))
    if kind == "DateType":
        return f"DATE '{value}'"
    text = str(value)
    if escaped_literals and ("\\" in text or "'" in text):
        return None  # the parser takes backslashes literally: no safe quoting, no bound
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def target_bounds(source: DataFrame, columns: list[str], alias: str = "t") -> list[str]:
    """`alias.c >= low AND alias.c <= high` conjuncts for each orderable column of `columns`,
    from the smallest and largest value of `source` (one aggregation; none when it is empty)."""
    from pyspark.sql import functions as F

    types = {f.name: f.dataType for f in source.schema.fields}
    kinds = {c: k for c in columns if c in types and (k := _kind(types[c])) is not None}
    if not kinds:
        return []
    aggregates = []
    for i, (column, kind) in enumerate(kinds.items()):
        value = _bound_value(kind, column)
        aggregates += [F.min(value).alias(f"lo{i}"), F.max(value).alias(f"hi{i}")]
    row = source.agg(*aggregates).collect()[0]
    conf = source.sparkSession.conf.get("spark.sql.parser.escapedStringLiterals", "false")
    escaped = str(conf).lower() == "true"
    conditions = []
    for i, (column, kind) in enumerate(kinds.items()):
        low, high = row[f"lo{i}"], row[f"hi{i}"]
        if low is None or high is None:
            continue
        low_sql, high_sql = _literal(kind, low, escaped), _literal(kind, high, escaped)
        if low_sql is None or high_sql is None:
            continue
        name = f"{alias}.{quote_identifier(column)}"
        conditions += [f"{name} >= {low_sql}", f"{name} <= {high_sql}"]
    return conditions
