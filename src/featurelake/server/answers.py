"""JSON of historical answers, built in DuckDB from the Arrow rows an engine returns.

A historical answer can hold millions of values. Turning them into Python objects and then
JSON text holds the interpreter lock for seconds, and every online read in the same process
waits for it; so does one copy of a large text (a join, an encode), which Python makes without
letting go of the lock. Here the rows stay in Arrow: DuckDB (which releases the lock while it
runs) sorts them by entity and window and renders them as JSON text in chunks of
`ROWS_PER_CHUNK` rows, and the answer is sent chunk by chunk, so Python only ever holds the
lock for one chunk's copy. Timestamps are ISO-8601 text as `datetime.isoformat` writes them,
NaN and infinities are null (JSON has none).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

START, END = "_start", "_end"
ROWS_PER_CHUNK = 2_000  # answer rows per chunk of text (each ~100-300 KB)


def answer_chunks(
    head: dict[str, Any],
    table: pa.Table,
    keys: list[str],
    columns: list[str],
    tail: dict[str, Any],
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> Iterator[bytes]:
    """`{**head, "rows": [...], **tail}` as JSON bytes, in chunks.

    `table` holds the entity `keys`, `_start`, `_end` and the value `columns`; each row becomes
    `{entity, window_start, window_end, values}`, ordered by entity keys, then window start.
    The rows are rendered when this is called (by DuckDB); the chunks only hand the text out.
    """
    first = json.dumps(head, separators=(",", ":"), allow_nan=False)
    last = json.dumps(tail, separators=(",", ":"), allow_nan=False)
    opening = (first[:-1] + (',"rows":[' if len(first) > 2 else '"rows":[')).encode("utf-8")
    closing = ("]," + last[1:] if len(last) > 2 else "]}").encode("utf-8")
    if table.num_rows == 0:
        return iter((opening, closing))
    return _chunks(opening, _rendered(table, keys, columns, rows_per_chunk), closing)


def _chunks(opening: bytes, rendered: duckdb.DuckDBPyConnection, closing: bytes) -> Iterator[bytes]:
    try:
        yield opening
        separator = b""
        while (chunk := rendered.fetchone()) is not None:
            yield separator + chunk[0].encode("utf-8")
            separator = b","
        yield closing
    finally:
        rendered.close()


def _rendered(
    table: pa.Table, keys: list[str], columns: list[str], rows_per_chunk: int
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose pending result is the rows' JSON text, one row per chunk."""
    from featurelake.engines.duckdb.executor import connect
    from featurelake.gold.delta_reader import quote

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
    sql = (
        "SELECT string_agg(fl_row, ',' ORDER BY fl_n) FROM ("
        f"SELECT {row}::VARCHAR AS fl_row, row_number() OVER (ORDER BY {order}) - 1 AS fl_n "
        f"FROM fl_answer) GROUP BY fl_n // {int(rows_per_chunk)} ORDER BY fl_n // "
        f"{int(rows_per_chunk)}"
    )
    connection = connect(external_access=False)
    try:
        connection.register("fl_answer", table)
        connection.execute(sql)
    except BaseException:
        connection.close()
        raise
    return connection


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
