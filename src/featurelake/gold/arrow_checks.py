"""A pandas or Arrow batch checked on Arrow as the Spark write path checks a DataFrame.

`conform` gives the group's columns with the same lossless casts and raises the same errors as
`schema.validation.conform_columns` (and the pandas conversion of the Spark path);
`check_rows` applies the same row rules (`rule_specs`) and raises the same error, with the same
sample of offending rows, as `explain_violations`. Used by `gold.small_writes`.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from featurelake.errors import SchemaValidationError, first_line
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, SqlType
from featurelake.schema.types import DataType, is_safe_cast
from featurelake.schema.validation import (
    SAMPLE_ROWS,
    RuleSpec,
    check_columns,
    column_targets,
    key_type_error,
    lossy_type_error,
    shown_columns,
    violations_error,
)

if TYPE_CHECKING:
    import pyarrow as pa


# -- conforming the batch ---------------------------------------------------------------------


def arrow_type(sql_type: SqlType) -> pa.DataType:
    """The Arrow type of a featurelake type as Spark and delta-rs store it."""
    import pyarrow as pa

    atomic: dict[DataType, pa.DataType] = {
        DataType.INT: pa.int32(),
        DataType.BIGINT: pa.int64(),
        DataType.FLOAT: pa.float32(),
        DataType.DOUBLE: pa.float64(),
        DataType.STRING: pa.string(),
        DataType.BOOLEAN: pa.bool_(),
        DataType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
        DataType.DATE: pa.date32(),
    }
    return sql_type.fold(
        lambda t: (
            pa.decimal128(t.precision, t.scale) if t.kind is DataType.DECIMAL else atomic[t.kind]
        ),
        pa.list_,
        pa.map_,
        lambda fields: pa.struct([pa.field(name, t) for name, t in fields]),
    )


def sql_type_of(arrow: pa.DataType) -> SqlType | None:
    """The featurelake type of an Arrow type (as Spark would read it), or None."""
    import pyarrow as pa
    import pyarrow.types as at

    if at.is_int8(arrow) or at.is_int16(arrow) or at.is_int32(arrow):
        return SqlType(DataType.INT)
    if at.is_int64(arrow):
        return SqlType(DataType.BIGINT)
    simple = {
        pa.float32(): DataType.FLOAT,
        pa.float64(): DataType.DOUBLE,
        pa.bool_(): DataType.BOOLEAN,
        pa.date32(): DataType.DATE,
    }
    if arrow in simple:
        return SqlType(simple[arrow])
    if at.is_string(arrow) or at.is_large_string(arrow) or at.is_string_view(arrow):
        return SqlType(DataType.STRING)
    if at.is_timestamp(arrow):
        return SqlType(DataType.TIMESTAMP)
    if at.is_decimal(arrow):
        return SqlType(DataType.DECIMAL, precision=arrow.precision, scale=arrow.scale)
    if at.is_list(arrow) or at.is_large_list(arrow):
        element = sql_type_of(arrow.value_type)
        return None if element is None else SqlType(DataType.ARRAY, element=element)
    if at.is_map(arrow):
        key, value = sql_type_of(arrow.key_type), sql_type_of(arrow.item_type)
        return None if key is None or value is None else SqlType(DataType.MAP, key=key, value=value)
    if at.is_struct(arrow):
        parts = [
            (arrow.field(i).name, sql_type_of(arrow.field(i).type)) for i in range(arrow.num_fields)
        ]
        if any(t is None for _, t in parts):
            return None
        return SqlType(DataType.STRUCT, fields=tuple((n, t) for n, t in parts if t is not None))
    return None


def conform(data: Any, schema: FeatureGroupSchema, key_types: dict[str, SqlType]) -> pa.Table:
    """The batch as an Arrow table of the group's columns and types (lossless casts only).

    pandas columns convert to the declared types as the Spark path converts them (Arrow's
    safe conversion, wall-clock times meaning UTC); an Arrow batch keeps its types, checked and
    cast like a Spark frame's by `conform_columns`. Raises the errors of the Spark path.
    """
    import pyarrow as pa

    is_pandas = not isinstance(data, (pa.Table, pa.RecordBatch))
    names = [str(c) for c in data.columns] if is_pandas else list(data.schema.names)
    check_columns(schema, [n for n in names if n != INGESTED_AT])
    expected = schema.columns
    targets = column_targets(schema, key_types)
    table = _from_pandas(data, schema, targets) if is_pandas else pa.table(data)
    columns: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for name in expected:
        column = table.column(name)
        actual = sql_type_of(column.type)
        target = targets[name]
        if target is None:
            if actual is None or not actual.is_atomic:
                raise key_type_error(schema, name, str(column.type))
            target = actual
        if actual is None or not is_safe_cast(actual, target):
            raise lossy_type_error(
                schema, name, actual.simple_string() if actual else str(column.type), target
            )
        wanted = arrow_type(target)
        if column.type != wanted:
            column = column.cast(wanted, safe=target.kind is not DataType.TIMESTAMP)
        columns.append(column)
        fields.append(pa.field(name, wanted))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _from_pandas(
    frame: Any, schema: FeatureGroupSchema, targets: dict[str, SqlType | None]
) -> pa.Table:
    import pyarrow as pa

    from featurelake.times import pandas_utc

    frame = pandas_utc(frame, aware=True)
    arrays = {}
    for name in schema.columns:
        target = targets[name]
        series = frame[name]
        try:
            if target is None:
                arrays[name] = pa.array(series, from_pandas=True)
            elif target.kind is DataType.TIMESTAMP:  # sub-microsecond digits are dropped
                converted = pa.array(series, from_pandas=True)
                kind = converted.type
                if not (
                    pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_null(kind)
                ):
                    raise TypeError(f"{converted.type} values are not times")
                arrays[name] = converted.cast(arrow_type(target), safe=False)
            else:
                arrays[name] = pa.array(
                    series, type=arrow_type(target), from_pandas=True, safe=True
                )
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
            pa.ArrowNotImplementedError,
            TypeError,
            ValueError,
        ) as error:
            raise SchemaValidationError(
                f"The pandas batch for group '{schema.name}' does not convert to the schema's "
                f"types without loss: column '{name}': {first_line(error)}",
                fix="correct the column types in pandas (nullable integers need dtype 'Int64').",
                group=schema.name,
            ) from error
    return pa.table(arrays)


# -- row rules --------------------------------------------------------------------------------


def check_rows(batch: pa.Table, schema: FeatureGroupSchema, specs: list[RuleSpec]) -> None:
    """Raise the Spark path's error (counts and sample rows) when a row breaks a rule.

    Masks and counts stay in Arrow (a batch of 100k rows is checked in milliseconds); only the
    sample of a failing batch becomes Python values."""
    import pyarrow.compute as pc

    masks = [_violations(batch, schema, spec) for spec in specs]
    counts = [int(pc.sum(mask).as_py() or 0) for mask in masks]
    broken = [(i, spec, n) for i, (spec, n) in enumerate(zip(specs, counts, strict=True)) if n]
    if not broken:
        return
    index, first, _ = broken[0]
    shown = shown_columns(schema, first.column)
    offending = batch.filter(masks[index]).slice(0, SAMPLE_ROWS)
    sample = [_naive(row) for row in offending.select(shown).to_pylist()]
    raise violations_error(schema, [(s.column, s.rule, n) for _, s, n in broken], sample)


def _violations(batch: pa.Table, schema: FeatureGroupSchema, spec: RuleSpec) -> Any:
    """A boolean mask (no nulls) of the rows breaking `spec`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column(spec.column)
    if spec.kind == "null":
        mask = pc.is_null(column)
    elif spec.kind in ("min", "max"):
        compare = pc.less if spec.kind == "min" else pc.greater
        mask = compare(column, pa.scalar(spec.value))
    elif spec.kind == "allowed":
        try:
            allowed = pa.array(spec.value).cast(column.type)
            found = pc.is_in(column, value_set=allowed)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            values = set(spec.value)
            found = pa.array([v in values for v in column.to_pylist()])
        mask = pc.and_(pc.is_valid(column), pc.invert(found))
    else:
        return _duplicates(batch, [*schema.entity_keys, schema.timestamp_key])
    return pc.fill_null(mask, False)


def _duplicates(batch: pa.Table, columns: list[str]) -> Any:
    """The rows whose values of `columns` occur more than once in the batch (nulls equal)."""
    import pyarrow as pa

    keys = batch.select(columns)
    try:
        groups = keys.group_by(columns, use_threads=False).aggregate([]).num_rows
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        groups = -1  # a key type Arrow cannot group: count in Python
    if groups == batch.num_rows:
        return pa.array([False] * batch.num_rows, pa.bool_())
    tuples = [tuple(row.values()) for row in keys.to_pylist()]
    counts = Counter(tuples)
    return pa.array([counts[t] > 1 for t in tuples], pa.bool_())


def _naive(row: dict[str, Any]) -> dict[str, Any]:
    """Times as Spark returns them in a UTC session (naive)."""
    return {
        k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) and v.tzinfo else v
        for k, v in row.items()
    }
