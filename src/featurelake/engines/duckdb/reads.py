"""The read rules of `plan.rules` compiled to DuckDB SQL over Arrow tables.

Group rows are Arrow tables (keys, event time, features and `_ingested_at`, timestamps as naive
UTC). Latest: per entity, the first row of `rules.latest_order` (a `row_number()` window).
Point in time: the group's events are first reduced to one per (keys, event time) by that order,
then joined with DuckDB's `ASOF LEFT JOIN` (event time `<=` the entity time), one join per
`rules.carry_units` unit, the ttl applied on the chosen event, the events pruned to
`rules.event_time_bounds`. Keys are compared as `rules.common_key_type`.

Values reach SQL only as registered Arrow tables or as literals formatted from typed values.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from featurelake.errors import PointInTimeError
from featurelake.gold.delta_reader import quote, sql_literal
from featurelake.plan import rules
from featurelake.schema import SqlType

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

ROW = "__fl_row"


@dataclass(frozen=True)
class GroupRows:
    """One group's rows for a DuckDB read."""

    group: str
    table: pa.Table
    """Keys, event time, features and `_ingested_at` (naive UTC timestamps)."""
    entity_keys: tuple[str, ...]
    timestamp_key: str
    features: tuple[str, ...]
    """The features to return, in order."""
    tie_breakers: tuple[str, ...] = ()
    """Features ordering exact ties (latest reads: every feature of the group)."""
    output_names: Mapping[str, str] = field(default_factory=dict)
    ttl: timedelta | None = None

    def output_name(self, feature: str) -> str:
        return self.output_names.get(feature, feature)


def latest_rows(
    connection: duckdb.DuckDBPyConnection,
    groups: Sequence[GroupRows],
    keys: Sequence[str],
    *,
    ids: pa.Table | None = None,
    point_in_time: datetime | None = None,
) -> pa.Table:
    """The latest value per entity of each group (full outer join on `keys` across groups),
    restricted to the entities of `ids` (a table of key columns) when given."""
    names = _Names(connection)
    id_view = names.register(ids) if ids is not None else None
    parts = []
    for group in groups:
        view = names.register(group.table)
        ties = rules.tie_breakers(group.tie_breakers, _types(group.table))
        ts = quote(group.timestamp_key)
        where = []
        if point_in_time is not None:
            where.append(f"{ts} <= {sql_literal(point_in_time)}")
        if id_view is not None:
            match = " AND ".join(f"s.{quote(k)} = i.{quote(k)}" for k in keys)
            where.append(f"EXISTS (SELECT 1 FROM {id_view} i WHERE {match})")
        order = _order_by(rules.latest_order(group.timestamp_key, ties))
        columns = [quote(k) for k in keys]
        if len(groups) == 1:
            columns.append(ts)
        columns += [f"{quote(f)} AS {quote(group.output_name(f))}" for f in group.features]
        parts.append(
            f"SELECT {', '.join(columns)} FROM (SELECT s.*, row_number() OVER ("
            f"PARTITION BY {', '.join('s.' + quote(k) for k in keys)} "
            f"ORDER BY {', '.join(order)}) AS {ROW} FROM {view} s"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f") WHERE {ROW} = 1"
        )
    sql = parts[0]
    for part in parts[1:]:
        using = ", ".join(map(quote, keys))
        sql = f"SELECT * FROM ({sql}) FULL OUTER JOIN ({part}) USING ({using})"
    try:
        return connection.sql(sql).to_arrow_table()
    finally:
        names.drop()


def point_in_time_rows(
    connection: duckdb.DuckDBPyConnection,
    entities: pa.Table,
    groups: Sequence[GroupRows],
    timestamp_column: str,
    fill: str = "none",
) -> pa.Table:
    """Every row of `entities`, in order, with each group's features as of its own time."""
    import pyarrow as pa

    _validate(entities, groups, timestamp_column, fill)
    names = _Names(connection)
    try:
        numbered = entities.append_column(ROW, pa.array(range(entities.num_rows), pa.int64()))
        entity_view = names.register(numbered)
        bounds = _time_bounds(connection, entity_view, timestamp_column)
        joins = []
        outputs = []
        for g_index, group in enumerate(groups):
            key_types = _key_types(entities, group)
            view = names.register(group.table)
            types = _types(group.table)
            units = rules.carry_units(group.features, fill)
            tie = [f for unit in units if rules.unit_orderable(unit, types) for f in unit.features]
            for u_index, unit in enumerate(units):
                alias = f"u{g_index}_{u_index}"
                unit_sql = _unit_sql(
                    entity_view,
                    view,
                    group,
                    key_types,
                    timestamp_column,
                    bounds,
                    unit,
                    tie,
                )
                joins.append(f"LEFT JOIN ({unit_sql}) {alias} USING ({ROW})")
                outputs += [
                    f"{alias}.{quote(_value(i))} AS {quote(group.output_name(f))}"
                    for i, f in enumerate(unit.features)
                ]
        select = [f"e.{quote(c)}" for c in entities.column_names] + outputs
        sql = f"SELECT {', '.join(select)} FROM {entity_view} e {' '.join(joins)} ORDER BY e.{ROW}"
        with _readable_times(timestamp_column):
            return connection.sql(sql).to_arrow_table()
    finally:
        names.drop()


def _unit_sql(
    entity_view: str,
    view: str,
    group: GroupRows,
    key_types: Sequence[str],
    timestamp_column: str,
    bounds: tuple[int | None, int | None],
    unit: rules.CarryUnit,
    tie: Sequence[str],
) -> str:
    """One ASOF join: per entity row, the values of the unit's features from the latest event
    (of the events where `unit.required` is not null, for `fill="last_non_null"`)."""
    features = unit.features
    keys = group.entity_keys
    knames = [f"__k{i}" for i in range(len(keys))]
    ts = quote(group.timestamp_key)
    where = [f"{ts} IS NOT NULL"] + [f"{quote(k)} IS NOT NULL" for k in keys]
    needed = rules.event_time_bounds(*bounds, group.ttl)
    if needed is None:
        where.append("FALSE")
    else:
        low, high = needed
        where.append(f"epoch_us(CAST({ts} AS TIMESTAMP)) <= {int(high)}")
        if low is not None:
            where.append(f"epoch_us(CAST({ts} AS TIMESTAMP)) >= {int(low)}")
    if unit.required is not None:
        where.append(f"{quote(unit.required)} IS NOT NULL")
    # Events are first reduced to one per (keys, event time): the latest order without its
    # event time (equal within a partition).
    order = _order_by(rules.latest_order(group.timestamp_key, tie)[1:])
    casted = [
        f"CAST({quote(k)} AS {t}) AS {n}" for k, t, n in zip(keys, key_types, knames, strict=True)
    ]
    values = [f"{quote(f)} AS {quote(_value(i))}" for i, f in enumerate(features)]
    events = (
        f"SELECT {', '.join(casted)}, CAST({ts} AS TIMESTAMP) AS __ts, {', '.join(values)}, "
        f"row_number() OVER (PARTITION BY {', '.join(knames)}, CAST({ts} AS TIMESTAMP) "
        f"ORDER BY {', '.join(order)}) AS __rank FROM {view} WHERE {' AND '.join(where)}"
    )
    entity = (
        f"SELECT {ROW}, {', '.join(casted)}, "
        f"CAST({quote(timestamp_column)} AS TIMESTAMP) AS __t FROM {entity_view}"
    )
    match = " AND ".join(f"e.{n} = f.{n}" for n in knames)
    picked = []
    for i in range(len(features)):
        value = f"f.{quote(_value(i))}"
        if group.ttl is not None:
            micros = group.ttl // timedelta(microseconds=1)
            value = f"CASE WHEN e.__t <= f.__ts + to_microseconds({int(micros)}) THEN {value} END"
        picked.append(f"{value} AS {quote(_value(i))}")
    return (
        f"SELECT e.{ROW}, {', '.join(picked)} FROM ({entity}) e ASOF LEFT JOIN "
        f"(SELECT * FROM ({events}) WHERE __rank = 1) f ON {match} AND e.__t >= f.__ts"
    )


def _value(index: int) -> str:
    return f"__v{index}"


def _time_bounds(
    connection: duckdb.DuckDBPyConnection, entity_view: str, column: str
) -> tuple[int | None, int | None]:
    with _readable_times(column):
        rows = connection.execute(
            f"SELECT epoch_us(min(CAST({quote(column)} AS TIMESTAMP))), "
            f"epoch_us(max(CAST({quote(column)} AS TIMESTAMP))) FROM {entity_view}"
        ).fetchall()
    return rows[0][0], rows[0][1]


@contextmanager
def _readable_times(column: str) -> Iterator[None]:
    """DuckDB's failure to cast an entity time string, as the typed point-in-time error."""
    try:
        yield
    except Exception as error:
        if type(error).__name__ == "ConversionException":
            raise rules.unreadable_times(column, str(error), "pd.to_datetime") from error
        raise


def _validate(entities: pa.Table, groups: Sequence[GroupRows], column: str, fill: str) -> None:
    """The checks of a point-in-time read that can fail on entity rows given as pandas / Arrow."""
    import pyarrow as pa

    rules.check_fill(fill)
    names = entities.column_names
    rules.check_entity_columns(names)
    if column not in names:
        raise PointInTimeError(
            f"entity_df has no column '{column}'.",
            fix=f"pass timestamp_column= one of {names}.",
        )
    kind = entities.schema.field(column).type
    if not (
        pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_null(kind)
    ):
        raise rules.not_a_time(column, str(kind), "pd.to_datetime")
    for group in groups:
        rules.check_ttl(group.group, group.ttl)


def _key_types(entities: pa.Table, group: GroupRows) -> list[str]:
    """The DuckDB type both sides of each key are compared as (`rules.common_key_type`)."""
    from featurelake.engines.duckdb.executor import duckdb_type

    types = []
    for key in group.entity_keys:
        if key not in entities.column_names:
            raise PointInTimeError(
                f"entity_df has no column ['{key}'] for the entity keys of group "
                f"'{group.group}' ({list(group.entity_keys)}).",
                fix=f"add the key column '{key}' to entity_df.",
                group=group.group,
            )
        sides = [
            ("the entity DataFrame", entities.schema.field(key).type),
            (f"group '{group.group}'", group.table.schema.field(key).type),
        ]
        common = rules.common_key_type(
            key, [(where, _known_type(kind), str(kind)) for where, kind in sides]
        )
        types.append(duckdb_type(common))
    return types


def _known_type(kind: pa.DataType) -> SqlType | None:
    """The featurelake type of an Arrow type, or None for one featurelake does not know."""
    from featurelake.engines.duckdb.executor import sql_type_from_arrow

    try:
        return sql_type_from_arrow(kind)
    except ValueError:
        return None


def _types(table: pa.Table) -> dict[str, SqlType | None]:
    return {f.name: _known_type(f.type) for f in table.schema}


def _order_by(keys: Sequence[rules.SortKey]) -> list[str]:
    """The rule's ordering in DuckDB SQL: greatest first, nulls lowest."""
    return [f"{quote(key.column)} DESC NULLS LAST" for key in keys]


class _Names:
    """Arrow tables registered on a connection for one read, dropped afterwards."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection
        self.names: list[str] = []

    def register(self, table: pa.Table) -> str:
        name = f"_fl_{uuid.uuid4().hex[:12]}"
        self.connection.register(name, table)
        self.names.append(name)
        return quote(name)

    def drop(self) -> None:
        for name in self.names:
            self.connection.unregister(name)
        self.names.clear()


__all__ = ["GroupRows", "latest_rows", "point_in_time_rows"]
