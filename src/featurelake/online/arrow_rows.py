"""Latest rows of a group as Arrow: what a sync hands to an online store.

A latest-rows table holds, in this order: the entity key columns, `TS_COLUMN` and
`INGESTED_COLUMN` (event and ingestion time as epoch microseconds, int64; a missing ingestion
time is null), then every feature of the group in schema order, top-level timestamps as epoch
microseconds (so no time zone is applied on the way). Spark makes it with
`online.sync.latest_per_entity`, delta-rs reads with `latest_arrow`.

`column_batches` turns such a table into the stores' `ColumnBatch`es (Python values, the way
every store accepts writes); Redis encodes the Arrow columns directly instead
(`online.redis_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from featurelake.online.values import KEY_SEPARATOR, ColumnBatch, from_micros, key_part
from featurelake.schema import INGESTED_AT, DataType, FeatureGroupSchema, SqlType
from featurelake.times import utc_naive

TS_COLUMN = "__fl_ts_us"
INGESTED_COLUMN = "__fl_ing_us"


def column_batches(
    schema: FeatureGroupSchema, table: Any, batch_rows: int
) -> Iterator[ColumnBatch]:
    """The rows of a latest-rows table as `ColumnBatch`es of at most `batch_rows` rows."""
    key_count = len(schema.entity_keys)
    converters = [converter(f.data_type, top=True) for f in schema.features]
    for offset in range(0, table.num_rows, batch_rows):
        columns = [c.to_pylist() for c in table.slice(offset, batch_rows).columns]
        if key_count == 1:
            entities = [key_part(v) for v in columns[0]]
        else:
            entities = [
                KEY_SEPARATOR.join(key_part(v) for v in parts)
                for parts in zip(*columns[:key_count], strict=True)
            ]
        features = columns[key_count + 2 :]
        for position, convert in enumerate(converters):
            if convert is not None:
                features[position] = [None if v is None else convert(v) for v in features[position]]
        yield ColumnBatch(
            entities,
            columns[key_count],
            [0 if v is None else v for v in columns[key_count + 1]],
            schema.feature_names,
            features,
        )


def converter(sql_type: SqlType, *, top: bool = False) -> Callable[[Any], Any] | None:
    """What turns Arrow's Python value of `sql_type` into what the stores keep, or None.

    Top-level timestamps arrive as epoch microseconds; nested ones as UTC datetimes, kept naive
    (UTC) like everywhere else; maps arrive as (key, value) pairs and become dicts.
    """
    kind = sql_type.kind
    if kind is DataType.TIMESTAMP:
        return from_micros if top else utc_naive
    if kind is DataType.ARRAY:
        assert sql_type.element is not None
        element = converter(sql_type.element)
        if element is None:
            return None
        return lambda v: [None if x is None else element(x) for x in v]
    if kind is DataType.MAP:
        assert sql_type.key is not None and sql_type.value is not None
        key = converter(sql_type.key) or _same
        value = converter(sql_type.value) or _same
        return lambda v: {key(k): None if x is None else value(x) for k, x in v}
    if kind is DataType.STRUCT:
        fields = [(name, converter(t)) for name, t in sql_type.fields]
        if all(c is None for _, c in fields):
            return None
        return lambda v: {
            name: (v[name] if c is None or v[name] is None else c(v[name])) for name, c in fields
        }
    return None


def _same(value: Any) -> Any:
    return value


def latest_arrow(rows: Any, schema: FeatureGroupSchema) -> Any:
    """The latest row per entity of an Arrow table of the group's Gold rows, as a latest-rows
    table: the row of the greatest event time, ties to the greatest `_ingested_at` (a null one
    counting as least), as the offline reads choose.

    Timestamps, naive (UTC) or zoned, become epoch microseconds.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = list(schema.entity_keys)
    rows = without_views(rows)
    present = set(rows.column_names)
    count = rows.num_rows
    ingested = (
        micros(rows.column(INGESTED_AT)) if INGESTED_AT in present else pa.nulls(count, pa.int64())
    )
    least = pa.scalar(-(2**63), pa.int64())  # a null time sorts below every time
    order = pa.table(
        {
            **{f"k{i}": rows.column(k) for i, k in enumerate(keys)},
            "t": pc.fill_null(micros(rows.column(schema.timestamp_key)), least),
            "i": pc.fill_null(ingested, least),
        }
    )
    sort_keys = [(name, "ascending") for name in order.column_names]
    indices = pc.sort_indices(order, sort_keys=sort_keys)
    ranked = order.take(indices).append_column("p", pa.array(range(count), pa.int64()))
    # The last position of each entity's run in the sorted order is its latest row.
    last = ranked.group_by([f"k{i}" for i in range(len(keys))], use_threads=False).aggregate(
        [("p", "max")]
    )
    chosen = indices.take(last.column("p_max"))
    picked = rows.take(chosen)
    columns: dict[str, Any] = {k: picked.column(k) for k in keys}
    columns[TS_COLUMN] = micros(picked.column(schema.timestamp_key))
    columns[INGESTED_COLUMN] = ingested.take(chosen)
    for feature in schema.features:
        if feature.name not in present:
            columns[feature.name] = pa.nulls(len(chosen))
        elif feature.data_type.kind is DataType.TIMESTAMP:
            columns[feature.name] = micros(picked.column(feature.name))
        else:
            columns[feature.name] = picked.column(feature.name)
    return pa.table(columns)


def without_views(table: Any) -> Any:
    """`table` with view types (string_view, ..., which delta-rs returns and Arrow's `take`
    does not handle) cast to their plain counterparts."""
    import pyarrow as pa

    def plain(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_string_view(kind):
            return pa.string()
        if pa.types.is_binary_view(kind):
            return pa.binary()
        if pa.types.is_list_view(kind) or pa.types.is_list(kind):
            return pa.list_(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_large_list_view(kind) or pa.types.is_large_list(kind):
            return pa.large_list(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_map(kind):
            return pa.map_(
                kind.key_field.with_type(plain(kind.key_type)),
                kind.item_field.with_type(plain(kind.item_type)),
            )
        if pa.types.is_struct(kind):
            return pa.struct([f.with_type(plain(f.type)) for f in kind])
        return kind

    wanted = pa.schema([f.with_type(plain(f.type)) for f in table.schema])
    return table if wanted.equals(table.schema) else table.cast(wanted)


def micros(column: Any) -> Any:
    """An Arrow timestamp column (any unit, naive or zoned) as epoch microseconds (int64)."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    return column
