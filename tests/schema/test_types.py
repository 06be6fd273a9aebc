from __future__ import annotations

import pytest
from pyspark.sql import types as T

from featurelake.errors import SchemaValidationError
from featurelake.schema import DataType, SqlType, is_safe_cast


@pytest.mark.parametrize(
    "text",
    [
        "int",
        "bigint",
        "float",
        "double",
        "decimal(12,3)",
        "string",
        "boolean",
        "timestamp",
        "date",
        "array<double>",
        "map<string,bigint>",
        "struct<a:int,b:array<string>>",
        "array<struct<x:double,y:map<string,int>>>",
    ],
)
def test_type_strings_round_trip_through_spark(text: str) -> None:
    parsed = SqlType.parse(text)
    assert parsed.simple_string() == text
    assert SqlType.from_spark(parsed.to_spark()) == parsed
    assert parsed.to_spark().simpleString() == text


def test_aliases_and_spark_types() -> None:
    assert SqlType.parse("long").kind is DataType.BIGINT
    assert SqlType.parse("INTEGER").kind is DataType.INT
    assert SqlType.from_spark(T.ShortType()) == SqlType(DataType.INT)
    assert SqlType.parse(DataType.DOUBLE) == SqlType(DataType.DOUBLE)


@pytest.mark.parametrize(
    "text", ["", "array<", "array<double", "map<string>", "decimal(50,2)", "uuid", "int int"]
)
def test_bad_type_strings_are_rejected(text: str) -> None:
    with pytest.raises(SchemaValidationError, match=r"Cannot read the data type|needs its parts"):
        SqlType.parse(text)


def test_complex_kind_without_parts_is_rejected() -> None:
    with pytest.raises(SchemaValidationError, match="needs its parts"):
        SqlType.parse(DataType.ARRAY)


@pytest.mark.parametrize(
    ("source", "target", "safe"),
    [
        ("int", "bigint", True),
        ("int", "double", True),
        ("float", "double", True),
        ("date", "timestamp", True),
        ("decimal(10,2)", "decimal(12,2)", True),
        ("array<int>", "array<bigint>", True),
        ("bigint", "int", False),
        ("double", "int", False),
        ("bigint", "double", False),
        ("string", "int", False),
        ("timestamp", "date", False),
        ("decimal(12,2)", "decimal(10,2)", False),
    ],
)
def test_safe_casts(source: str, target: str, safe: bool) -> None:
    assert is_safe_cast(SqlType.parse(source), SqlType.parse(target)) is safe
