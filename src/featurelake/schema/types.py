"""Data types of features, written as Spark-style type strings and mapped both ways to Spark.

`DataType` names the kind; `SqlType` is a full type (element, key/value, fields, precision).
Parsing and printing need no Spark; only `to_spark` / `from_spark` import pyspark.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from featurelake.errors import SchemaValidationError

if TYPE_CHECKING:
    from pyspark.sql import types as T


class DataType(StrEnum):
    """The kinds of values a feature can hold."""

    INT = "int"
    BIGINT = "bigint"
    FLOAT = "float"
    DOUBLE = "double"
    DECIMAL = "decimal"
    STRING = "string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    DATE = "date"
    ARRAY = "array"
    MAP = "map"
    STRUCT = "struct"


class FeatureType(StrEnum):
    """What a feature means to a model (drives statistics and defaults)."""

    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    TEXT = "text"
    VECTOR = "vector"
    TIMESERIES = "timeseries"
    COMPLEX = "complex"


FEATURE_TYPE_ALIASES: dict[str, FeatureType] = {
    "numeric": FeatureType.NUMERICAL,
    "embedding": FeatureType.VECTOR,
    "timestamp": FeatureType.TIMESERIES,
    "boolean": FeatureType.CATEGORICAL,
}
"""Other stores' names of feature types (NUMERIC, EMBEDDING, TIMESTAMP, BOOLEAN)."""

VALUE_TYPES: dict[str, str] = {
    "int": "bigint",
    "float": "double",
    "string": "string",
    "bool": "boolean",
    "list": "array<double>",
    "dict": "map<string,string>",
}
"""Python value types (`value_type=` INT, FLOAT, STRING, BOOL, LIST, DICT) as Spark types."""


def feature_type_of(value: Any) -> FeatureType:
    """A `FeatureType` from its name or another store's name for it (case-insensitive)."""
    if isinstance(value, FeatureType):
        return value
    text = str(getattr(value, "name", value)).lower()
    return FEATURE_TYPE_ALIASES.get(text) or FeatureType(text)


def value_type_of(value: Any) -> str:
    """The Spark type of a Python value type name (INT, FLOAT, STRING, BOOL, LIST, DICT)."""
    text = str(getattr(value, "name", value)).lower()
    if text not in VALUE_TYPES:
        raise SchemaValidationError(
            f"'{value}' is not a value type.",
            fix="use one of INT, FLOAT, STRING, BOOL, LIST, DICT, or data_type= with a Spark "
            "type such as 'double' or 'array<float>'.",
        )
    return VALUE_TYPES[text]


ATOMIC = frozenset(
    {
        DataType.INT,
        DataType.BIGINT,
        DataType.FLOAT,
        DataType.DOUBLE,
        DataType.DECIMAL,
        DataType.STRING,
        DataType.BOOLEAN,
        DataType.TIMESTAMP,
        DataType.DATE,
    }
)
NUMERIC = frozenset(
    {DataType.INT, DataType.BIGINT, DataType.FLOAT, DataType.DOUBLE, DataType.DECIMAL}
)
_ALIASES = {
    "integer": "int",
    "long": "bigint",
    "short": "int",
    "smallint": "int",
    "tinyint": "int",
    "byte": "int",
    "real": "float",
    "bool": "boolean",
    "str": "string",
    "varchar": "string",
    "text": "string",
    "timestamp_ltz": "timestamp",
    "datetime": "timestamp",
}


R = TypeVar("R")
"""What `SqlType.fold` builds."""


@dataclass(frozen=True)
class SqlType:
    """A complete data type: `kind` plus its parts where the kind has them."""

    kind: DataType
    element: SqlType | None = None
    key: SqlType | None = None
    value: SqlType | None = None
    fields: tuple[tuple[str, SqlType], ...] = ()
    precision: int = 10
    scale: int = 0

    @classmethod
    def parse(cls, text: str | DataType | SqlType) -> SqlType:
        """Parse `int`, `decimal(10,2)`, `array<double>`, `map<string,int>`, `struct<a:int>`."""
        if isinstance(text, SqlType):
            return text
        if isinstance(text, DataType):
            if text not in ATOMIC:
                raise SchemaValidationError(
                    f"The type '{text.value}' needs its parts.",
                    fix="write it in full, e.g. 'array<double>', 'map<string,int>' or "
                    "'struct<a:int,b:string>'.",
                )
            return cls(text)
        parser = _TypeParser(str(text))
        parsed = parser.parse_type()
        parser.expect_end()
        return parsed

    @property
    def is_atomic(self) -> bool:
        return self.kind in ATOMIC

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC

    def fold(
        self,
        atomic: Callable[[SqlType], R],
        array: Callable[[R], R],
        mapping: Callable[[R, R], R],
        struct: Callable[[list[tuple[str, R]]], R],
    ) -> R:
        """The type rebuilt from the bottom up: `atomic` of each atomic type (decimals too),
        then `array`, `mapping` and `struct` of what their parts gave (how the type is written in
        another system, say, in four cases)."""
        if self.kind is DataType.ARRAY:
            assert self.element is not None
            return array(self.element.fold(atomic, array, mapping, struct))
        if self.kind is DataType.MAP:
            assert self.key is not None and self.value is not None
            return mapping(
                self.key.fold(atomic, array, mapping, struct),
                self.value.fold(atomic, array, mapping, struct),
            )
        if self.kind is DataType.STRUCT:
            return struct(
                [(name, t.fold(atomic, array, mapping, struct)) for name, t in self.fields]
            )
        return atomic(self)

    def simple_string(self) -> str:
        """The type as Spark prints it (`array<double>`); parse(simple_string()) == self."""
        return self.fold(
            lambda t: (
                f"decimal({t.precision},{t.scale})" if t.kind is DataType.DECIMAL else t.kind.value
            ),
            lambda element: f"array<{element}>",
            lambda key, value: f"map<{key},{value}>",
            lambda fields: "struct<" + ",".join(f"{name}:{t}" for name, t in fields) + ">",
        )

    def __str__(self) -> str:
        return self.simple_string()

    def to_spark(self) -> T.DataType:
        """The matching `pyspark.sql.types` instance."""
        from pyspark.sql import types as T

        atomic: dict[DataType, Any] = {
            DataType.INT: T.IntegerType,
            DataType.BIGINT: T.LongType,
            DataType.FLOAT: T.FloatType,
            DataType.DOUBLE: T.DoubleType,
            DataType.STRING: T.StringType,
            DataType.BOOLEAN: T.BooleanType,
            DataType.TIMESTAMP: T.TimestampType,
            DataType.DATE: T.DateType,
        }
        return self.fold(
            lambda t: (
                T.DecimalType(t.precision, t.scale)
                if t.kind is DataType.DECIMAL
                else atomic[t.kind]()
            ),
            lambda element: T.ArrayType(element, containsNull=True),
            lambda key, value: T.MapType(key, value, valueContainsNull=True),
            lambda fields: T.StructType(
                [T.StructField(name, t, nullable=True) for name, t in fields]
            ),
        )

    @classmethod
    def known_spark_type(cls, spark_type: T.DataType) -> SqlType | None:
        """The featurelake type of a Spark type, or None for a type featurelake does not know."""
        try:
            return cls.from_spark(spark_type)
        except SchemaValidationError:
            return None

    @classmethod
    def from_spark(cls, spark_type: T.DataType) -> SqlType:
        """The featurelake type of a Spark type; unsupported Spark types raise an error."""
        from pyspark.sql import types as T

        if isinstance(spark_type, T.ArrayType):
            return cls(DataType.ARRAY, element=cls.from_spark(spark_type.elementType))
        if isinstance(spark_type, T.MapType):
            return cls(
                DataType.MAP,
                key=cls.from_spark(spark_type.keyType),
                value=cls.from_spark(spark_type.valueType),
            )
        if isinstance(spark_type, T.StructType):
            return cls(
                DataType.STRUCT,
                fields=tuple((f.name, cls.from_spark(f.dataType)) for f in spark_type.fields),
            )
        if isinstance(spark_type, T.DecimalType):
            return cls(DataType.DECIMAL, precision=spark_type.precision, scale=spark_type.scale)
        if isinstance(spark_type, T.TimestampNTZType):
            return cls(DataType.TIMESTAMP)
        if isinstance(spark_type, (T.ByteType, T.ShortType)):
            return cls(DataType.INT)
        return cls.parse(spark_type.simpleString())


def is_safe_cast(source: SqlType, target: SqlType) -> bool:
    """True when every value of `source` converts to `target` without loss."""
    if source == target:
        return True
    widening = {
        DataType.INT: {DataType.BIGINT, DataType.DOUBLE},
        DataType.BIGINT: set(),
        DataType.FLOAT: {DataType.DOUBLE},
        DataType.DATE: {DataType.TIMESTAMP},
    }
    if source.kind in widening and target.kind in widening[source.kind]:
        return True
    if source.kind is DataType.INT and target.kind is DataType.DECIMAL:
        return target.precision - target.scale >= 10
    if source.kind is DataType.BIGINT and target.kind is DataType.DECIMAL:
        return target.precision - target.scale >= 19
    if source.kind is DataType.DECIMAL and target.kind is DataType.DECIMAL:
        return (
            target.scale >= source.scale
            and target.precision - target.scale >= source.precision - source.scale
        )
    if source.kind is DataType.ARRAY and target.kind is DataType.ARRAY:
        assert source.element is not None and target.element is not None
        return is_safe_cast(source.element, target.element)
    if source.kind is DataType.MAP and target.kind is DataType.MAP:
        assert source.key and source.value and target.key and target.value
        return source.key == target.key and is_safe_cast(source.value, target.value)
    return False


_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|\d+|[<>(),:])")


class _TypeParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        position = 0
        stripped = text.rstrip()
        while position < len(stripped):
            match = _TOKEN.match(stripped, position)
            if not match:
                self._fail(f"unexpected character {stripped[position]!r}")
            assert match is not None
            self.tokens.append(match.group(1))
            position = match.end()
        self.index = 0

    def _fail(self, why: str) -> None:
        raise SchemaValidationError(
            f"Cannot read the data type '{self.text}': {why}.",
            fix="use one of int, bigint, float, double, decimal(p,s), string, boolean, "
            "timestamp, date, array<T>, map<K,V>, struct<name:T,...>.",
        )

    def _next(self) -> str:
        if self.index >= len(self.tokens):
            self._fail("it ends too early")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _take(self, expected: str) -> None:
        token = self._next()
        if token != expected:
            self._fail(f"expected '{expected}' but found '{token}'")

    def _peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def expect_end(self) -> None:
        if self.index != len(self.tokens):
            self._fail(f"unexpected '{self.tokens[self.index]}' after the type")

    def parse_type(self) -> SqlType:
        word = self._next().lower()
        word = _ALIASES.get(word, word)
        try:
            kind = DataType(word)
        except ValueError:
            self._fail(f"'{word}' is not a known type")
            raise  # unreachable: _fail raises
        if kind is DataType.DECIMAL:
            if self._peek() != "(":
                return SqlType(kind)
            self._take("(")
            precision = int(self._next())
            scale = 0
            if self._peek() == ",":
                self._take(",")
                scale = int(self._next())
            self._take(")")
            if not 0 < precision <= 38 or not 0 <= scale <= precision:
                self._fail("decimal precision must be 1..38 and scale 0..precision")
            return SqlType(kind, precision=precision, scale=scale)
        if kind is DataType.ARRAY:
            self._take("<")
            element = self.parse_type()
            self._take(">")
            return SqlType(kind, element=element)
        if kind is DataType.MAP:
            self._take("<")
            key = self.parse_type()
            self._take(",")
            value = self.parse_type()
            self._take(">")
            return SqlType(kind, key=key, value=value)
        if kind is DataType.STRUCT:
            self._take("<")
            fields: list[tuple[str, SqlType]] = []
            while self._peek() != ">":
                if fields:
                    self._take(",")
                name = self._next()
                self._take(":")
                fields.append((name, self.parse_type()))
            self._take(">")
            return SqlType(kind, fields=tuple(fields))
        return SqlType(kind)
