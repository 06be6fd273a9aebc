"""The read rules, stated once. Each engine compiles them (`engines/spark`, `engines/duckdb`).

- **As of a time.** A feature row of an entity counts for a time `t` when its event time is
  `<= t`, and, when the group has a ttl, `t - event_time <= ttl`.
- **Latest.** Among the rows that count, the latest is the one with the greatest event time,
  then the greatest `_ingested_at`, then (exact ties) the greatest values of the tie-breaking
  features in declaration order, nulls lowest (`latest_order`). Features whose type cannot be
  ordered (maps, and anything holding one) do not break ties (`orderable`).
- **Fill.** `fill="none"`: every feature of a group comes from its latest row (a null there stays
  null). `fill="last_non_null"`: each feature comes from its own latest row where it is not null,
  the ttl measured on that row's event time (`carry_units`).
- **Nulls.** Entity rows with a null key or time get null features; feature rows with a null key
  or event time never count.
- **Keys.** Entity keys are compared as one type: equal types, or any integers as `bigint`
  (`common_key_type`).
- **Pruning.** Only feature rows with event times in `[min(t) - ttl, max(t)]` can count
  (`event_time_bounds`).
- **Windows.** A window `w` of an aggregation covers, for an entity row at `t`, the events of its
  keys with `t - w < event_time <= t`: an event exactly at `t - w` is out, one exactly at `t` is
  in (`in_window`). Entities without events count 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from featurelake.errors import PointInTimeError
from featurelake.schema import INGESTED_AT, DataType, SqlType

FILL_MODES = ("none", "last_non_null")


def check_fill(fill: str) -> None:
    """`fill` is a fill mode, or a PointInTimeError naming the two there are."""
    if fill not in FILL_MODES:
        raise PointInTimeError(
            f"fill={fill!r} is not a fill mode.",
            fix="pass fill='none' (a null in the latest event stays null) or "
            "fill='last_non_null' (each feature takes its latest non-null value).",
        )


def check_ttl(group: str, ttl: timedelta | None) -> None:
    """A ttl is None (no limit) or zero or more."""
    if ttl is not None and ttl < timedelta(0):
        raise PointInTimeError(
            f"The ttl of group '{group}' is negative ({ttl}).",
            fix="use a ttl of zero or more, or None for no limit.",
            group=group,
        )


def check_entity_columns(columns: Sequence[str]) -> None:
    """Entity rows name each column once."""
    duplicates = sorted({c for c in columns if list(columns).count(c) > 1})
    if duplicates:
        raise PointInTimeError(
            f"The entity DataFrame has duplicate column names: {duplicates}.",
            fix="rename or drop the duplicates (e.g. after a join) before requesting features.",
        )


def not_a_time(column: str, printed_type: str, parse_with: str) -> PointInTimeError:
    """The error for an entity time column whose type is not a time, a date or a string."""
    return PointInTimeError(
        f"The entity timestamp column '{column}' has type {printed_type}, which is not a time.",
        fix=f"make '{column}' a timestamp, a date, or a string such as "
        f"'2024-01-31 12:00:00' (e.g. with {parse_with}).",
    )


def unreadable_times(column: str, detail: str, parse_with: str) -> PointInTimeError:
    """The error for an entity time column holding strings that do not read as times."""
    return PointInTimeError(
        f"Some values of the entity timestamp column '{column}' cannot be read as timestamps: "
        f"{detail.splitlines()[0]}",
        fix=f"parse '{column}' with {parse_with} first, or set the unreadable values to null.",
        column=column,
    )


def orderable(kind: SqlType | None) -> bool:
    """True when values of the type can be ordered (not a map, nor anything holding one).
    None (a type featurelake does not know) cannot."""
    if kind is None or kind.kind is DataType.MAP:
        return False
    if kind.kind is DataType.ARRAY:
        return orderable(kind.element)
    if kind.kind is DataType.STRUCT:
        return all(orderable(field) for _, field in kind.fields)
    return True


@dataclass(frozen=True)
class SortKey:
    """One column of an ordering: greatest first, nulls lowest."""

    column: str


def latest_order(timestamp_key: str, tie_breakers: Sequence[str]) -> tuple[SortKey, ...]:
    """Which row of an entity is the latest: event time, `_ingested_at`, then the tie-breakers,
    each greatest first with nulls lowest."""
    return tuple(SortKey(c) for c in (timestamp_key, INGESTED_AT, *tie_breakers))


def tie_breakers(features: Sequence[str], types: dict[str, SqlType | None]) -> tuple[str, ...]:
    """The features (in order) that break exact ties: those present with an orderable type."""
    return tuple(f for f in features if f in types and orderable(types[f]))


@dataclass(frozen=True)
class CarryUnit:
    """Features taken together from one row per entity row (`required`: the feature that must
    not be null in that row, for `fill="last_non_null"`)."""

    features: tuple[str, ...]
    required: str | None = None


def carry_units(features: Sequence[str], fill: str) -> tuple[CarryUnit, ...]:
    """How the features of one group are carried to the entity rows under `fill`."""
    check_fill(fill)
    if fill == "none":
        return (CarryUnit(tuple(features)),)
    return tuple(CarryUnit((f,), required=f) for f in features)


def unit_orderable(unit: CarryUnit, types: dict[str, SqlType | None]) -> bool:
    """True when every feature of a carried unit can be ordered (it then breaks exact ties)."""
    return all(orderable(types.get(f)) for f in unit.features)


def event_time_bounds(
    entity_min_us: int | None, entity_max_us: int | None, ttl: timedelta | None
) -> tuple[int | None, int] | None:
    """The event times (epoch microseconds, UTC) a feature row needs to count for some entity
    row: `(low, high)`, `low` None for no lower bound; None when no entity row has a time."""
    if entity_max_us is None:
        return None
    if ttl is None or entity_min_us is None:
        return None, entity_max_us
    return entity_min_us - ttl // timedelta(microseconds=1), entity_max_us


def in_window(event_time_us: int, entity_time_us: int, window: timedelta) -> bool:
    """True when an event at `event_time_us` falls in the window `w` ending at the entity time
    (epoch microseconds): `t - w < event_time <= t`."""
    return entity_time_us - window // timedelta(microseconds=1) < event_time_us <= entity_time_us


def common_key_type(key: str, sides: Sequence[tuple[str, SqlType | None, str]]) -> SqlType:
    """The type every side of an entity key is compared as: their one type, or `bigint` when
    all are integers. `sides` are (where, type or None when unknown, the type as printed)."""
    kinds = [kind for _, kind, _ in sides]
    first = kinds[0]
    if first is not None and all(kind == first for kind in kinds):
        return first
    if all(kind is not None and kind.kind in (DataType.INT, DataType.BIGINT) for kind in kinds):
        return SqlType(DataType.BIGINT)
    listing = ", ".join(f"{printed} in {where}" for where, _, printed in sides)
    raise PointInTimeError(
        f"The entity key '{key}' has different types: {listing}.",
        fix=f"cast '{key}' to one type on both sides before the point-in-time join.",
        column=key,
    )


__all__ = [
    "FILL_MODES",
    "CarryUnit",
    "SortKey",
    "carry_units",
    "check_entity_columns",
    "check_fill",
    "check_ttl",
    "common_key_type",
    "event_time_bounds",
    "in_window",
    "latest_order",
    "not_a_time",
    "orderable",
    "tie_breakers",
    "unit_orderable",
    "unreadable_times",
]
