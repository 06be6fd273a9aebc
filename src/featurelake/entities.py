"""Entity ids in every shape a user passes, turned into the shapes the engines read.

Accepted: one value (a single-key group), a list / tuple / set of values, of tuples in key order
or of dicts `{key: value}`, one dict `{key: value}` (one entity), a dict of columns
`{"customer_id": [1, 2], ...}`, or a pandas or Spark DataFrame of key columns. Everything else
is a `SchemaValidationError` that lists these shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from featurelake.errors import SchemaValidationError

ACCEPTED_SHAPES = (
    "a value, a list of values, tuples or dicts, a dict of columns "
    "({'customer_id': [1, 2]}), or a pandas or Spark DataFrame of key columns"
)
_SCALARS = (str, bytes, int, float, bool)


def is_frame(value: Any) -> bool:
    """True for pandas, classic Spark and Spark Connect DataFrames."""
    return type(value).__name__ == "DataFrame"


def normalize_entity_ids(entity_ids: Any) -> Any:
    """`entity_ids` as None, a DataFrame (pandas or Spark) or a list of values / tuples /
    dicts; a dict of columns becomes a pandas DataFrame."""
    if entity_ids is None or is_frame(entity_ids):
        return entity_ids
    if isinstance(entity_ids, Mapping):
        columns = list(entity_ids.values())
        if columns and all(_is_column(c) for c in columns):
            return _columns_frame(entity_ids)
        if columns and not any(_is_column(c) for c in columns):
            return [dict(entity_ids)]  # one entity of several keys
        raise SchemaValidationError(
            f"The entity ids {_short(entity_ids)} mix columns and single values.",
            fix=f"pass {ACCEPTED_SHAPES}.",
        )
    if isinstance(entity_ids, _SCALARS) or _is_scalar(entity_ids):
        return [entity_ids]
    if isinstance(entity_ids, (list, tuple, set, frozenset)) or _is_column(entity_ids):
        return list(entity_ids)
    raise SchemaValidationError(
        f"The entity ids are a {type(entity_ids).__name__}, which featurelake cannot read as "
        "entity ids.",
        fix=f"pass {ACCEPTED_SHAPES}.",
    )


def _is_column(value: Any) -> bool:
    """A list-like of values (list, tuple, pandas Series, numpy array), not a string."""
    if isinstance(value, (str, bytes, Mapping)):
        return False
    if isinstance(value, (list, tuple)):
        return True
    return type(value).__name__ in ("Series", "ndarray") and isinstance(value, Iterable)


def _is_scalar(value: Any) -> bool:
    """Dates, times, decimals and numpy scalars: one entity id."""
    module = type(value).__module__
    return module in ("datetime", "decimal", "numpy", "uuid") and not _is_column(value)


def _columns_frame(columns: Mapping[str, Any]) -> Any:
    import pandas as pd

    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise SchemaValidationError(
            f"The entity id columns have different lengths: {lengths}.",
            fix="give every key column one value per entity.",
        )
    return pd.DataFrame({name: list(values) for name, values in columns.items()})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
