"""Check JSON records against a group schema and turn them into typed Python values.

Used for every HTTP write before anything is stored, and again when staged records are
compacted into Gold. A batch with any bad record is refused whole, with an error naming each
column, rule and record (the first few).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from featurelake.errors import SchemaValidationError
from featurelake.schema import DataType, FeatureGroupSchema, SqlType
from featurelake.times import utc_naive

MAX_REPORTED = 10
INT_RANGE = (-(2**31), 2**31 - 1)
BIGINT_RANGE = (-(2**63), 2**63 - 1)


class _Bad(Exception):
    """A value does not fit its type (the message says how)."""


def parse_timestamp(value: Any) -> datetime:
    """An ISO-8601 string (or datetime) as a naive UTC datetime; offsets are converted."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO-8601 time") from None
    else:
        raise _Bad(f"{value!r} is not an ISO-8601 time string")
    return utc_naive(parsed)


def _converter(sql_type: SqlType) -> Callable[[Any], Any]:
    """A function from a JSON value to the Python value of `sql_type` (raises _Bad)."""
    kind = sql_type.kind

    def integer(bounds: tuple[int, int]) -> Callable[[Any], Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _Bad(f"{value!r} is not a whole number")
            if not bounds[0] <= value <= bounds[1]:
                raise _Bad(f"{value} is outside the range of {kind.value}")
            return value

        return convert

    def floating(value: Any) -> Any:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Bad(f"{value!r} is not a number")
        return float(value)

    def decimal(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _Bad(f"{value!r} is not a decimal number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise _Bad(f"{value!r} is not a decimal number") from None
        if not number.is_finite():
            raise _Bad(f"{value!r} is not a finite decimal")
        quantum = Decimal(1).scaleb(-sql_type.scale)
        rounded = number.quantize(quantum)
        if rounded != number:
            raise _Bad(f"{value!r} has more than {sql_type.scale} decimal places")
        if len(rounded.as_tuple().digits) > sql_type.precision:
            raise _Bad(f"{value!r} has more than {sql_type.precision} digits")
        return rounded

    def string(value: Any) -> Any:
        if not isinstance(value, str):
            raise _Bad(f"{value!r} is not a string")
        return value

    def boolean(value: Any) -> Any:
        if not isinstance(value, bool):
            raise _Bad(f"{value!r} is not true or false")
        return value

    def day(value: Any) -> Any:
        if not isinstance(value, str):
            raise _Bad(f"{value!r} is not an ISO date string")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO date") from None

    scalars: dict[DataType, Callable[[Any], Any]] = {
        DataType.INT: integer(INT_RANGE),
        DataType.BIGINT: integer(BIGINT_RANGE),
        DataType.FLOAT: floating,
        DataType.DOUBLE: floating,
        DataType.DECIMAL: decimal,
        DataType.STRING: string,
        DataType.BOOLEAN: boolean,
        DataType.TIMESTAMP: parse_timestamp,
        DataType.DATE: day,
    }
    if kind in scalars:
        return scalars[kind]
    if kind is DataType.ARRAY:
        assert sql_type.element is not None
        element = _nullable(_converter(sql_type.element))

        def array(value: Any) -> Any:
            if not isinstance(value, list):
                raise _Bad(f"{value!r} is not a list")
            return [element(v) for v in value]

        return array
    if kind is DataType.MAP:
        assert sql_type.key is not None and sql_type.value is not None
        key_kind = sql_type.key.kind
        key_of = _converter(sql_type.key)
        value_of = _nullable(_converter(sql_type.value))

        def mapping(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise _Bad(f"{value!r} is not an object")
            out = {}
            for k, v in value.items():
                if key_kind in (DataType.INT, DataType.BIGINT) and isinstance(k, str):
                    try:
                        k = int(k)
                    except ValueError:
                        raise _Bad(f"the map key {k!r} is not a whole number") from None
                out[key_of(k)] = value_of(v)
            return out

        return mapping
    fields = {name: _nullable(_converter(t)) for name, t in sql_type.fields}

    def struct(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Bad(f"{value!r} is not an object")
        extra = sorted(set(value) - set(fields))
        if extra:
            raise _Bad(f"the struct has no field(s) {extra}")
        return {name: convert(value.get(name)) for name, convert in fields.items()}

    return struct


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _entity_key(declared: SqlType | None) -> Callable[[Any], Any]:
    if declared is not None:
        return _converter(declared)

    def any_key(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Bad(f"{value!r} is not a whole number or a string")
        return value

    return any_key


class RowChecker:
    """The checks of one group schema, built once and applied to many records."""

    def __init__(self, schema: FeatureGroupSchema) -> None:
        self.schema = schema
        self.columns = set(schema.columns)
        self.keys = {k: _entity_key(schema.entity_key_types.get(k)) for k in schema.entity_keys}
        self.features = {f.name: _converter(f.data_type) for f in schema.features}

    def check(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Typed copies of `records`; SchemaValidationError if any record breaks the schema."""
        schema = self.schema
        problems: list[str] = []
        rows: list[dict[str, Any]] = []
        for number, record in enumerate(records):
            if not isinstance(record, Mapping):
                problems.append(f"record {number}: is not an object")
                continue
            row, errors = self._check_one(record)
            problems.extend(f"record {number}: {e}" for e in errors)
            rows.append(row)
        if problems:
            shown = "; ".join(problems[:MAX_REPORTED])
            more = (
                f" (and {len(problems) - MAX_REPORTED} more)"
                if len(problems) > MAX_REPORTED
                else ""
            )
            raise SchemaValidationError(
                f"{len(problems)} problem(s) in the records for group '{schema.name}' "
                f"v{schema.version}: {shown}{more}. Nothing was written.",
                fix=f"send records with the columns {list(schema.columns)} and values of the "
                "declared types (times as ISO-8601 strings).",
                group=schema.name,
                problems=problems[:MAX_REPORTED],
            )
        return rows

    def check_one(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The typed copy of one record and its problems (empty when it fits the schema)."""
        if not isinstance(record, Mapping):
            return {}, ["is not an object"]
        return self._check_one(record)

    def _check_one(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        schema = self.schema
        errors: list[str] = []
        unknown = sorted(str(c) for c in record if c not in self.columns)
        if unknown:
            errors.append(f"unknown column(s) {unknown}")
        row: dict[str, Any] = {}
        for key, convert in self.keys.items():
            value = record.get(key)
            if value is None:
                errors.append(f"entity key '{key}' is missing or null")
                continue
            try:
                row[key] = convert(value)
            except _Bad as bad:
                errors.append(f"entity key '{key}': {bad}")
        ts = schema.timestamp_key
        if record.get(ts) is None:
            errors.append(f"event time '{ts}' is missing or null")
        else:
            try:
                row[ts] = parse_timestamp(record[ts])
            except _Bad as bad:
                errors.append(f"event time '{ts}': {bad}")
        for feature in schema.features:
            value = record.get(feature.name)
            if value is None:
                if not feature.nullable:
                    errors.append(f"'{feature.name}' is not nullable but has no value")
                row[feature.name] = None
                continue
            try:
                typed = self.features[feature.name](value)
            except _Bad as bad:
                errors.append(f"'{feature.name}': {bad}")
                continue
            problem = _limits(feature.name, typed, feature.min_value, feature.max_value)
            allowed = feature.allowed_values
            if problem is None and allowed is not None and typed not in allowed:
                problem = f"'{feature.name}' = {value!r} is not one of {list(allowed)}"
            if problem is not None:
                errors.append(problem)
            row[feature.name] = typed
        return row, errors


def _limits(name: str, value: Any, low: float | None, high: float | None) -> str | None:
    if isinstance(value, float) and math.isnan(value) and (low is not None or high is not None):
        return f"'{name}' is NaN, outside [{low}, {high}]"
    if low is not None and value < low:
        return f"'{name}' = {value} is below its min {low}"
    if high is not None and value > high:
        return f"'{name}' = {value} is above its max {high}"
    return None
