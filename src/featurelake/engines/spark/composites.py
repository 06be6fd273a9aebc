"""Composite features on Spark: evaluate them on the joined stored features, keep what was asked.

The stored features a request reads include each composite's inputs; after the join the
composites are computed with the compiled expression's Spark form and the inputs nobody asked
for are dropped, so the output has exactly the requested columns, in request order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from featurelake.plan.refs import requested_output_names
from featurelake.schema.composites import ExpandedRequest

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def finish_request(
    frame: DataFrame,
    kept_columns: Sequence[str],
    expanded: ExpandedRequest,
    stored_columns: Mapping[tuple[str, str], str],
) -> DataFrame:
    """`kept_columns` (e.g. the entity columns), then each requested output in order.

    `stored_columns[(group, feature)]` is the column of `frame` holding a stored feature.
    """
    from pyspark.sql import functions as F

    def column(name: str) -> Column:
        return F.col("`" + name.replace("`", "``") + "`")

    finals = requested_output_names(expanded, kept_columns)
    by_key = {(c.group.name, c.composite.name): c for c in expanded.composites}
    outputs = [column(c) for c in kept_columns]
    for key in expanded.requested:
        request = by_key.get(key)
        if request is None:
            outputs.append(column(stored_columns[key]).alias(finals[key]))
            continue
        inputs = request.inputs
        value = request.composite.compiled.to_spark(
            lambda ref, inputs=inputs: column(stored_columns[inputs[ref]])  # type: ignore[misc]
        )
        outputs.append(value.alias(finals[key]))
    return frame.select(*outputs)
