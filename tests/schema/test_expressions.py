"""Composite expressions: one parse, a Spark column and a Python callable that agree."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from featurelake.errors import SchemaValidationError
from featurelake.schema.expressions import compile_expression

VALUES: list[tuple[Any, Any, Any]] = [
    (1.0, 2.0, 3),
    (7.5, 0.0, -2),
    (-7.5, 2.0, 0),
    (None, 1.0, 1),
    (0.0, None, None),
    (2.5, -0.5, 5),
    (1e308, 1e-10, 2),
    (float("nan"), 1.0, 4),
    (-3.0, 0.5, -1),
    (1.0, float("inf"), 7),
]
EXACT = [
    "a + b * c",
    "a / b",
    "a / 0",
    "a % b",
    "c % 0",
    "-a - c",
    "a / NULLIF(b, 0)",
    "COALESCE(a, b, 0) + 1",
    "CASE WHEN a > b THEN a WHEN a = b THEN 0 ELSE b END",
    "CASE WHEN a IS NULL THEN -1 END",
    "IF(a >= 1 AND NOT b < 0, 1, 0)",
    "a > 1 OR b > 1",
    "a <> b",
    "GREATEST(a, b, c)",
    "LEAST(a, b, c)",
    "ABS(a) + SIGN(b)",
    "FLOOR(a) + CEIL(b)",
    "ROUND(a, 1) + ROUND(b)",
    "SQRT(a)",
    "NULLIF(a, 7.5)",
    "b IS NOT NULL AND c IS NULL",
]
TRANSCENDENTAL = ["LN(a)", "LOG10(b)", "LOG(2, a)", "EXP(c)", "POW(a, b)", "POWER(c, 0.5)"]


def same(spark_value: Any, python_value: Any, ulps: int) -> bool:
    if spark_value is None or python_value is None:
        return spark_value is None and python_value is None
    if isinstance(spark_value, bool) or isinstance(python_value, bool):
        return spark_value is python_value
    if math.isnan(spark_value) or math.isnan(python_value):
        return math.isnan(spark_value) and math.isnan(python_value)
    if ulps == 0 or math.isinf(spark_value):
        return spark_value == python_value
    return abs(spark_value - python_value) <= ulps * math.ulp(abs(spark_value))


@pytest.mark.spark
def test_spark_and_python_agree(spark: SparkSession) -> None:
    frame = spark.createDataFrame(VALUES, "a double, b double, c int")
    texts = EXACT + TRANSCENDENTAL
    compiled = [compile_expression(t) for t in texts]
    columns = [c.to_spark(lambda ref: F.col(ref)).alias(f"e{i}") for i, c in enumerate(compiled)]
    rows = frame.select("a", "b", "c", *columns).collect()
    assert len(rows) == len(VALUES)
    for row in rows:
        inputs = {"a": row["a"], "b": row["b"], "c": row["c"]}
        for i, (text, expression) in enumerate(zip(texts, compiled, strict=True)):
            expected = row[f"e{i}"]
            got = expression.evaluate(inputs)
            assert same(expected, got, 0 if text in EXACT else 1), (text, inputs, expected, got)


def test_division_by_zero_is_null_and_types_are_known() -> None:
    ratio = compile_expression("a / b")
    assert ratio.evaluate({"a": 1, "b": 0}) is None
    assert ratio.evaluate({"a": 1, "b": -0.0}) is None
    assert ratio.evaluate({"a": 3, "b": 2}) == 1.5
    assert ratio.result_type == "double" and ratio.references == ("a", "b")
    flag = compile_expression("profile.age > 30 AND x IS NULL")
    assert flag.result_type == "boolean"
    assert flag.references == ("profile.age", "x")
    assert flag.evaluate({"profile.age": 31, "x": None}) is True
    assert flag.evaluate({"profile.age": None, "x": None}) is None
    assert compile_expression("ROUND(a)").evaluate({"a": 2.5}) == 3.0  # half up, as Spark


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("UPPER(a)", "UPPER(a)"),
        ("SUM(a) / 2", "SUM(a)"),
        ("a IN (1, 2)", "a IN (1, 2)"),
        ("CAST(a AS INT) + 1", "CAST(a AS INT)"),
        ("a || 'x'", "'x'"),
        ("(SELECT 1) + a", "SELECT 1"),
        ("x.y.z + 1", "x.y.z"),
        ("CASE WHEN a THEN 1 END", "'a'"),
        ("a DIV 2", "a DIV 2"),
        ("rand() * a", "RAND()"),
    ],
)
def test_forbidden_constructs_name_the_offending_part(text: str, named: str) -> None:
    with pytest.raises(SchemaValidationError) as error:
        compile_expression(text, what="composite feature 'ratio'")
    message = str(error.value)
    assert "composite feature 'ratio'" in message
    assert named.strip("'") in message
    assert error.value.fix


def test_unparsable_and_empty_expressions() -> None:
    with pytest.raises(SchemaValidationError, match="not valid SQL"):
        compile_expression("a +")
    with pytest.raises(SchemaValidationError, match="empty"):
        compile_expression("  ")
