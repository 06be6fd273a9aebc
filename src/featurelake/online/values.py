"""Plain-Python helpers shared by the online stores: times as epoch microseconds, entity ids.

Event times travel through the online layer as integers (microseconds since the Unix epoch,
UTC), so comparisons are exact in Python and in Redis' Lua alike. Naive datetimes are read as
UTC, the convention of the whole store (Spark's session time zone is UTC).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from featurelake.errors import SchemaValidationError

EPOCH = datetime(1970, 1, 1)
EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICRO = timedelta(microseconds=1)
KEY_SEPARATOR = "|"


def now_micros() -> int:
    return time.time_ns() // 1000


def to_micros(value: Any, *, what: str = "the event time") -> int:
    """Epoch microseconds of a datetime, date, pandas/numpy time or ISO string."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return (value - EPOCH_UTC) // ONE_MICRO
        return (value - EPOCH) // ONE_MICRO
    if isinstance(value, date):
        return (datetime(value.year, value.month, value.day) - EPOCH) // ONE_MICRO
    if type(value).__name__ == "datetime64":
        return int(value.astype("datetime64[us]").astype("int64"))
    if isinstance(value, str):
        try:
            return to_micros(datetime.fromisoformat(value), what=what)
        except ValueError:
            pass
    raise SchemaValidationError(
        f"{what.capitalize()} {value!r} is not a time.",
        fix="pass a datetime (naive means UTC), a date, or an ISO-8601 string.",
    )


def from_micros(micros: int) -> datetime:
    """The naive UTC datetime of epoch microseconds."""
    return EPOCH + timedelta(microseconds=micros)


def key_part(value: Any) -> str:
    """The text of one entity key value, stable across int/numpy/str inputs."""
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace(KEY_SEPARATOR, "\\" + KEY_SEPARATOR)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None:
        raise SchemaValidationError(
            "An entity key is null.", fix="pass a value for every entity key."
        )
    item = getattr(value, "item", None)  # numpy scalars
    if item is not None:
        return key_part(item())
    return str(value)


def entity_id(keys: Sequence[str], entity: Any) -> str:
    """The id of an entity for a group keyed by `keys`: one value, a mapping or a tuple."""
    if isinstance(entity, Mapping):
        try:
            parts = [entity[k] for k in keys]
        except KeyError as error:
            raise SchemaValidationError(
                f"The entity {dict(entity)!r} has no value for the key {error.args[0]!r}.",
                fix=f"give every entity key: {list(keys)}.",
            ) from None
    elif isinstance(entity, tuple | list):
        if len(entity) != len(keys):
            raise SchemaValidationError(
                f"The entity {entity!r} has {len(entity)} value(s) for {len(keys)} key(s) "
                f"{list(keys)}.",
                fix="pass one value per key, in key order, or a dict {key: value}.",
            )
        parts = list(entity)
    else:
        if len(keys) != 1:
            raise SchemaValidationError(
                f"The entity {entity!r} is one value, but the group has the keys {list(keys)}.",
                fix="pass a dict {key: value} or a tuple in key order.",
            )
        return key_part(entity)
    if len(parts) == 1:
        return key_part(parts[0])
    return KEY_SEPARATOR.join(key_part(p) for p in parts)


def entity_list(entity_keys: Any) -> list[Any]:
    """Entities as a list: a sequence as is, one value or dict as a list of one, or the rows of
    a pandas DataFrame of key columns as dicts."""
    if type(entity_keys).__name__ == "DataFrame" and hasattr(entity_keys, "to_dict"):
        return [dict(r) for r in entity_keys.to_dict("records")]
    if isinstance(entity_keys, str | bytes | Mapping) or not isinstance(entity_keys, Iterable):
        return [entity_keys]
    return list(entity_keys)


def entity_dict(keys: Sequence[str], entity: Any) -> dict[str, Any]:
    """The entity as {key: value} for the keys of one group."""
    if isinstance(entity, Mapping):
        return {k: entity[k] for k in keys if k in entity}
    if isinstance(entity, tuple | list):
        return dict(zip(keys, entity, strict=False))
    return {keys[0]: entity}


class ColumnBatch(NamedTuple):
    """Rows of one group as columns (the sync's fast path): `columns[i]` holds `names[i]`."""

    entities: list[str]
    event_us: list[int]
    ingested_us: list[int]
    names: tuple[str, ...]
    columns: list[list[Any]]
