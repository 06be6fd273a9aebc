"""Configuration written for other feature stores, read into featurelake's keys.

Nested sections (`materialized: {...}`, `virtualized: {...}`, `online: {...}`,
`hybrid: {...}`) are flattened; keys with a meaning here are renamed (`executor_type` is
`virtual_engine`); keys without one are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featurelake.errors import ConfigurationError

SECTIONS = ("materialized", "virtualized", "online", "hybrid")
RENAMED = {"executor_type": "virtual_engine"}
REFUSED = {
    "cache_enabled": "featurelake keeps no cache of feature rows: Gold reads go to the Delta "
    "tables (DuckDB answers small ones in milliseconds) and latest values are served by the "
    "online store",
    "enable_caching": "featurelake keeps no cache of virtual query results: a virtual group is "
    "computed at each read (materialize it, or use mode HYBRID, to read stored rows)",
    "cache_size_mb": "featurelake keeps no cache of feature rows (see cache_enabled)",
}
REFUSED_FIX = {
    "cache_enabled": "remove the key; set enable_online_store: true for low-latency reads.",
    "enable_caching": "remove the key; use mode: HYBRID or store.materialize(group).",
    "cache_size_mb": "remove the key.",
}


def translate(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with other stores' sections flattened and their keys renamed or refused."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                _put(out, inner, inner_value, where=f"{key}.{inner}")
        else:
            _put(out, key, value, where=key)
    return out


def _put(out: dict[str, Any], key: str, value: Any, *, where: str) -> None:
    if key in REFUSED:
        raise ConfigurationError(
            f"The configuration key '{where}' has no meaning in featurelake: {REFUSED[key]}.",
            fix=REFUSED_FIX[key],
            key=where,
        )
    if key == "storage_format":
        if str(value).lower() != "delta":
            raise ConfigurationError(
                f"The configuration key '{where}' is {value!r}, but featurelake stores every "
                "Gold table as Delta Lake (versions, time travel, atomic backfills and merges "
                "need it).",
                fix="remove the key (or set it to 'delta'); read a Gold table as Parquet files "
                "with any Delta reader.",
                key=where,
            )
        return
    name = RENAMED.get(key, key)
    if name in out and out[name] != value:
        raise ConfigurationError(
            f"The configuration sets '{name}' twice ({out[name]!r} and {value!r} at '{where}').",
            fix=f"set '{name}' once.",
            key=name,
        )
    out[name] = value
