"""How a group is kept fresh: its cron schedule and the source it is materialized from.

Pure data, validated on creation (cron expressions by croniter); `featurelake.scheduling` runs
them. A source is a Silver Delta table (read incrementally through its Change Data Feed), a
Spark SQL query (recomputed in full), or either of them followed by a Python transform
`"package.module:function"` taking and returning a DataFrame.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featurelake.errors import SchemaValidationError
from featurelake.schema.keys import check_keys

_TRANSFORM = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SOURCE_KEYS = frozenset({"table", "query", "transform", "incremental", "options"})


def check_cron(expression: object, *, what: str) -> str:
    """Return a valid 5-field cron expression, or raise SchemaValidationError naming `what`."""
    from croniter import croniter

    if not isinstance(expression, str) or not expression.strip():
        raise SchemaValidationError(
            f"The {what} is {expression!r}.",
            fix="write a 5-field cron expression such as '0 * * * *' (hourly) or '*/15 * * * *'.",
        )
    text = " ".join(expression.split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise SchemaValidationError(
            f"The {what} '{expression}' is not a valid 5-field cron expression.",
            fix="use 'minute hour day-of-month month day-of-week', e.g. '30 2 * * *' for 02:30 "
            "UTC daily.",
        )
    return text


@dataclass(frozen=True)
class MaterializationSource:
    """Where a group's rows come from.

    `table`: a Silver Delta table (path or catalog name). Runs read only its changes since the
    last run (Change Data Feed) when `incremental` (the default); the query and transform must
    then work row by row (no aggregation across rows), keeping the entity keys and event time.
    `query`: Spark SQL. With `table`, it reads the changed rows as the view `source`; without,
    it is run in full and replaces the Gold table. `transform`: `"module:function"`, called
    with the DataFrame and returning the group's rows. `options`: Delta or Kafka reader options
    passed through to Spark.
    """

    table: str | None = None
    query: str | None = None
    transform: str | None = None
    incremental: bool = True
    options: Mapping[str, str] = field(default_factory=dict)

    def __init__(
        self,
        table: str | None = None,
        query: str | None = None,
        transform: str | None = None,
        incremental: bool = True,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (("table", table), ("query", query), ("transform", transform)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SchemaValidationError(
                    f"source.{name} is {value!r}.", fix=f"give source.{name} as non-empty text."
                )
        if table is None and query is None:
            raise SchemaValidationError(
                "The source names neither a table nor a query.",
                fix="add 'table: <Silver Delta path or table>' or 'query: SELECT ...'.",
            )
        if transform is not None and not _TRANSFORM.match(transform):
            raise SchemaValidationError(
                f"source.transform '{transform}' is not 'module:function'.",
                fix="name an importable function, e.g. 'my_pipeline.features:customer_rows'.",
            )
        if not isinstance(incremental, bool):
            raise SchemaValidationError(
                f"source.incremental is {incremental!r}.", fix="use true or false."
            )
        set_ = object.__setattr__
        set_(self, "table", table)
        set_(self, "query", query)
        set_(self, "transform", transform)
        set_(self, "incremental", incremental)
        set_(self, "options", {str(k): str(v) for k, v in (options or {}).items()})

    @property
    def reads_changes(self) -> bool:
        """True when runs read only the table's changes (a table source, incremental)."""
        return self.table is not None and self.incremental

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("table", "query", "transform"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if not self.incremental:
            out["incremental"] = False
        if self.options:
            out["options"] = dict(self.options)
        return out

    @classmethod
    def from_value(cls, value: Any) -> MaterializationSource | None:
        """Read the YAML form: a mapping, or a plain string naming a table."""
        if value is None or isinstance(value, MaterializationSource):
            return value
        if isinstance(value, str):
            return cls(table=value)
        if not isinstance(value, Mapping):
            raise SchemaValidationError(
                f"'source' must be a table name or a mapping, got {type(value).__name__}.",
                fix="write 'source: {table: silver/orders}' or 'source: {query: SELECT ...}'.",
            )
        check_keys(value, SOURCE_KEYS, "'source'")
        return cls(**{str(k): v for k, v in value.items()})
