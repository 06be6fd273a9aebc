"""JSON of historical answers, built in DuckDB from the Arrow rows an engine returns.

A historical answer can hold millions of values. Turning them into Python objects and then
JSON text holds the interpreter lock for seconds, and every online read in the same process
waits for it. Here the rows stay in Arrow: DuckDB (which releases the lock while it runs)
sorts them by entity and window and renders them as one JSON array; Python only joins the
text with the metadata. Timestamps are ISO-8601 text as `datetime.isoformat` writes them,
NaN and infinities are null (JSON has none).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

START, END = "_start", "_end"


def rows_json(table: pa.Table, keys: list[str], columns: list[str]) -> str:
    """The JSON array `[{entity, window_start, window_end, values}, ...]` of `table`.

    `table` holds the entity `keys`, `_start`, `_end` and the value `columns`; rows come out
    ordered by entity keys, then window start.
    """
    from featurelake.engines.duckdb.executor import connect
    from featurelake.gold.delta_reader import quote

    if table.num_rows == 0:
        return "[]"

    def value(name: str) -> str:
        return _json_value(quote(name), table.schema.field(name).type)

    def obj(names: list[str]) -> str:
        if not names:
            return "json_object()"
        return "json_object(" + ", ".join(f"{_text(n)}, {value(n)}" for n in names) + ")"

    row = (
        f"json_object('entity', {obj(keys)}, 'window_start', {value(START)}, "
        f"'window_end', {value(END)}, 'values', {obj(columns)})"
    )
    order = ", ".join(quote(k) for k in [*keys, START])
    sql = f"SELECT string_agg({row}::VARCHAR, ',' ORDER BY {order}) FROM fl_answer"
    connection = connect(external_access=False)
    try:
        connection.register("fl_answer", table)
        found = connection.execute(sql).fetchone()
    finally:
        connection.close()
    return "[" + (found[0] if found and found[0] else "") + "]"


def answer_body(head: dict[str, Any], rows: str, tail: dict[str, Any]) -> bytes:
    """`{**head, "rows": rows, **tail}` as JSON bytes, `rows` already JSON text."""
    first = json.dumps(head, separators=(",", ":"), allow_nan=False)
    last = json.dumps(tail, separators=(",", ":"), allow_nan=False)
    return (first[:-1] + ',"rows":' + rows + "," + last[1:]).encode("utf-8")


def _json_value(column: str, kind: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(kind):
        stamp = f"CAST({column} AS TIMESTAMP)"  # a zoned one at its UTC time (session in UTC)
        fraction = f"strftime({stamp}, '%f')"
        return (
            f"strftime({stamp}, '%Y-%m-%dT%H:%M:%S') || "
            f"CASE WHEN {fraction} = '000000' THEN '' ELSE '.' || {fraction} END"
        )
    if pa.types.is_floating(kind):
        return f"CASE WHEN isfinite({column}) THEN {column} END"
    return column


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
