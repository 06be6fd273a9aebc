"""Composite features on the DuckDB engine: evaluated on the joined stored features.

The compiled expression's Python form (the one the online store uses) gives, value for value,
what its Spark form gives offline, nulls included; the output has exactly the requested
columns, in request order, named as on Spark (`plan.refs.requested_output_names`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featurelake.plan.refs import requested_output_names
from featurelake.schema.composites import ExpandedRequest

if TYPE_CHECKING:
    import pyarrow as pa


def finish_request(
    table: pa.Table,
    kept_columns: Sequence[str],
    expanded: ExpandedRequest,
    stored_columns: Mapping[tuple[str, str], str],
) -> pa.Table:
    """`kept_columns` (e.g. the entity columns), then each requested output in order.

    `stored_columns[(group, feature)]` is the column of `table` holding a stored feature.
    """
    import pyarrow as pa

    finals = requested_output_names(expanded, kept_columns)
    by_key = {(c.group.name, c.composite.name): c for c in expanded.composites}
    names = list(kept_columns)
    columns: list[Any] = [table.column(c) for c in kept_columns]
    for key in expanded.requested:
        request = by_key.get(key)
        names.append(finals[key])
        if request is None:
            columns.append(table.column(stored_columns[key]))
            continue
        inputs = {
            ref: table.column(stored_columns[source]).to_pylist()
            for ref, source in request.inputs.items()
        }
        compiled = request.composite.compiled
        values = [
            compiled.evaluate({ref: column[row] for ref, column in inputs.items()})
            for row in range(table.num_rows)
        ]
        columns.append(pa.array(values, type=_arrow_type(compiled.result_type)))
    return pa.table(columns, names=names)


def _arrow_type(spark_type: str) -> pa.DataType | None:
    """The Arrow type of a composite's result type (None: let Arrow infer it)."""
    import pyarrow as pa

    types = {
        "double": pa.float64(),
        "float": pa.float32(),
        "bigint": pa.int64(),
        "int": pa.int32(),
        "boolean": pa.bool_(),
        "string": pa.string(),
    }
    return types.get(spark_type)
