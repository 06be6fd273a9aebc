"""Latest rows of a group encoded for Redis straight from their Arrow columns.

`encode_rows` turns a latest-rows table (`online.arrow_rows`) into two Arrow binary arrays of
Redis protocol bulk strings: the keys, and for each row its event time, ingestion time and
feature values, each value framed around the bytes `online.codec.encode` makes of it. Double,
float, int, bigint, string, boolean and top-level timestamp columns are encoded by Arrow
compute kernels over whole columns (no Python object per value); other types go value by value
through the codec, as any other write does. The rows of a slice are one contiguous run of bytes
in each array, so a script call over many keys is a join of a few buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurelake.errors import SchemaValidationError
from featurelake.online.arrow_rows import converter
from featurelake.online.codec import NULL, bulk, column_bulk_encoder
from featurelake.online.values import KEY_SEPARATOR, key_part
from featurelake.schema import DataType, FeatureGroupSchema, SqlType

if TYPE_CHECKING:
    import pyarrow as pa

NULL_BULK = bulk(NULL)
_DOUBLE_HEAD = b"$9\r\nF"  # a double: tag F and 8 bytes IEEE 754, little-endian
_CRLF = b"\r\n"


@dataclass(frozen=True)
class EncodedRows:
    """Framed keys and framed row arguments (event us, ingested us, then each feature)."""

    keys: pa.Array
    rows: pa.Array

    def __len__(self) -> int:
        return len(self.keys)

    def key_bytes(self, start: int, stop: int) -> memoryview:
        """The framed keys of rows `start` to `stop` as one run of bytes."""
        return _span(self.keys, start, stop)

    def row_bytes(self, start: int, stop: int) -> memoryview:
        """The framed arguments of rows `start` to `stop` as one run of bytes."""
        return _span(self.rows, start, stop)


def encode_rows(schema: FeatureGroupSchema, table: Any, key_prefix: bytes) -> EncodedRows:
    """Encode a latest-rows table whose keys are `key_prefix` + the entity id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    key_count = len(schema.entity_keys)
    columns = [_array(c) for c in table.columns]
    ids = entity_ids(schema, columns[:key_count])
    keys = _framed(pc.binary_join_element_wise(key_prefix, ids, b""))
    event_us, ingested_us = columns[key_count], columns[key_count + 1]
    if event_us.null_count:
        raise SchemaValidationError(
            f"{event_us.null_count} row(s) of group '{schema.name}' have no event time.",
            fix=f"write rows with a '{schema.timestamp_key}' value.",
        )
    parts = [
        _framed(_digits(event_us)),
        _framed(_digits(pc.fill_null(ingested_us, pa.scalar(0, ingested_us.type)))),
    ]
    for feature, column in zip(schema.features, columns[key_count + 2 :], strict=True):
        parts.append(encoded_column(column, feature.data_type))
    return EncodedRows(keys, pc.binary_join_element_wise(*parts, b""))


def entity_ids(schema: FeatureGroupSchema, columns: list[Any]) -> pa.Array:
    """The entity ids (`online.values.entity_id`) of key columns, as binary."""
    import pyarrow.compute as pc

    for name, column in zip(schema.entity_keys, columns, strict=True):
        if column.null_count:
            raise SchemaValidationError(
                f"{column.null_count} row(s) of group '{schema.name}' have a null entity key "
                f"'{name}'.",
                fix="pass a value for every entity key.",
            )
    parts = [_key_text(column) for column in columns]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR.encode())


def _key_text(column: Any) -> pa.Array:
    """`key_part` of each value: integers and strings by kernels, the rest value by value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_integer(kind):
        return _digits(column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        escaped = pc.replace_substring(column, "\\", "\\\\")
        escaped = pc.replace_substring(escaped, KEY_SEPARATOR, "\\" + KEY_SEPARATOR)
        return escaped.cast(pa.binary())
    return pa.array([key_part(v).encode() for v in column.to_pylist()], pa.binary())


def encoded_column(column: Any, sql_type: SqlType) -> pa.Array:
    """The framed codec bytes of each value of a feature column (null: the null value)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind, arrow = sql_type.kind, column.type
    if pa.types.is_null(arrow):
        return pa.array([NULL_BULK] * len(column), pa.binary())
    if kind in (DataType.DOUBLE, DataType.FLOAT) and pa.types.is_floating(arrow):
        return _doubles(column)
    if kind in (DataType.INT, DataType.BIGINT) and pa.types.is_integer(arrow):
        return _framed(_tagged(b"i", _digits(column)))
    if kind is DataType.TIMESTAMP and pa.types.is_integer(arrow):
        return _framed(_tagged(b"t", _digits(column)))  # epoch us of a naive (UTC) time
    if kind is DataType.STRING and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return _framed(_tagged(b"s", column.cast(pa.binary())))
    if kind is DataType.BOOLEAN and pa.types.is_boolean(arrow):
        return _framed(pc.if_else(column, b"b1", b"b0"))
    convert = converter(sql_type, top=True)
    values = column.to_pylist()
    if convert is not None:
        values = [None if v is None else convert(v) for v in values]
    return pa.array(column_bulk_encoder(kind)(values), pa.binary())


def _doubles(column: Any) -> pa.Array:
    """Doubles (floats widened exactly) as fixed 15-byte bulk strings, built in one buffer."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    count = len(column)
    values = pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    out = np.empty((count, 15), dtype=np.uint8)
    out[:, :5] = np.frombuffer(_DOUBLE_HEAD, np.uint8)
    out[:, 5:13] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(count, 8)
    out[:, 13:] = np.frombuffer(_CRLF, np.uint8)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(15), count, [None, pa.py_buffer(out)])
    framed = fixed.cast(pa.binary())
    if column.null_count:
        framed = pc.if_else(column.is_valid(), framed, NULL_BULK)
    return framed


def _digits(column: Any) -> pa.Array:
    import pyarrow as pa

    return column.cast(pa.string()).cast(pa.binary())


def _tagged(tag: bytes, values: Any) -> pa.Array:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(tag, values, b"")


def _framed(values: Any) -> pa.Array:
    """Each value as a bulk string (`$<length>\\r\\n<value>\\r\\n`); null as the null value."""
    import pyarrow.compute as pc

    lengths = _digits(pc.binary_length(values))
    framed = pc.binary_join_element_wise(b"$", lengths, _CRLF, values, _CRLF, b"")
    return pc.fill_null(framed, NULL_BULK) if values.null_count else framed


def _array(column: Any) -> Any:
    """One Arrow array of a table column (chunks joined; a single chunk as it is)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _span(array: Any, start: int, stop: int) -> memoryview:
    import numpy as np

    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    first = int(offsets[array.offset + start])
    last = int(offsets[array.offset + stop])
    data = array.buffers()[2]
    if data is None:  # every value empty
        return memoryview(b"")
    return memoryview(data)[first:last]
