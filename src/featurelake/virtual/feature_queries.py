"""Virtual groups given one query per feature (`queries={feature: sql}`), joined into one.

Each query yields the group's entity keys, its event time and its one feature; the group's
query is their full outer join on keys and event time, so a row exists for every (keys, time)
any of them has and a feature another query has no row for is null there. Point-in-time reads
then treat the joined rows like those of any virtual group.
"""

from __future__ import annotations

from collections.abc import Mapping

from featurelake.errors import VirtualizationQueryError
from featurelake.schema import FeatureGroupSchema


def join_feature_queries(schema: FeatureGroupSchema, queries: Mapping[str, str]) -> str:
    """One SELECT joining per-feature queries on the group's keys and event time (valid
    Spark SQL and DuckDB SQL)."""
    unknown = [name for name in queries if name not in schema.feature_names]
    if unknown:
        raise VirtualizationQueryError(
            f"Group '{schema.name}' was given queries for {unknown}, which are not its features.",
            fix=f"key queries by its features: {', '.join(schema.feature_names)}.",
            group=schema.name,
        )
    missing = [name for name in schema.feature_names if name not in queries]
    if missing:
        raise VirtualizationQueryError(
            f"Group '{schema.name}' was given no query for {missing}.",
            fix="give every feature a query (each yielding the keys, "
            f"'{schema.timestamp_key}' and the feature).",
            group=schema.name,
        )
    join_columns = ", ".join((*schema.entity_keys, schema.timestamp_key))
    parts = []
    selected = [*schema.entity_keys, schema.timestamp_key]
    for position, (feature, sql) in enumerate(queries.items()):
        text = str(sql).strip().rstrip(";").strip()
        if not text:
            raise VirtualizationQueryError(
                f"The query of feature '{feature}' in group '{schema.name}' is empty.",
                fix=f"pass a SELECT yielding the keys, '{schema.timestamp_key}' and '{feature}'.",
                group=schema.name,
            )
        alias = f"q{position}"
        source = f"(\n{text}\n) AS {alias}"
        joined = f"FULL OUTER JOIN {source} USING ({join_columns})"
        parts.append(source if position == 0 else joined)
        selected.append(f"{alias}.{feature} AS {feature}")
    return f"SELECT {', '.join(selected)}\nFROM " + "\n".join(parts)
