"""Turn what users pass (pandas or Spark DataFrames, Arrow tables, id lists) into Spark
DataFrames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featurelake.entities import normalize_entity_ids
from featurelake.errors import SchemaValidationError
from featurelake.schema import FeatureGroupSchema
from featurelake.session import is_spark_frame
from featurelake.times import pandas_utc, spark_utc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def to_spark(spark: SparkSession, data: Any, *, what: str) -> DataFrame:
    """A Spark DataFrame from a Spark or pandas DataFrame, its times as UTC instants
    (`featurelake.times`: naive times and `TIMESTAMP_NTZ` columns mean UTC)."""
    if is_spark_frame(data):
        return spark_utc(data)
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return spark.createDataFrame(pandas_utc(data, aware=True))
    if _is_arrow_table(data):
        return spark_utc(spark.createDataFrame(data))
    raise SchemaValidationError(
        f"{what} must be a Spark or pandas DataFrame (or an Arrow table), got "
        f"{type(data).__name__}.",
        fix="pass spark.createDataFrame(...), a pandas DataFrame or a pyarrow.Table.",
    )


def _is_arrow_table(data: Any) -> bool:
    """Whether `data` is a `pyarrow.Table` (without importing pyarrow for other input)."""
    if not type(data).__module__.startswith("pyarrow"):
        return False
    import pyarrow as pa

    return isinstance(data, pa.Table)


def pandas_for_group(
    spark: SparkSession, data: Any, schema: FeatureGroupSchema, key_types: Mapping[str, Any]
) -> DataFrame:
    """A pandas batch converted with the group's declared types (safe Arrow conversion)."""
    from pyspark.sql import types as T

    frame = pandas_utc(data, aware=True)
    expected = set(schema.columns)
    if set(frame.columns) != expected:
        # Let the DataFrame check name the missing/extra columns.
        return spark.createDataFrame(frame)
    fields = []
    for name in frame.columns:
        if name in schema.entity_keys:
            declared = schema.entity_key_types.get(name) or key_types.get(name)
            spark_type = declared.to_spark() if declared is not None else None
        elif name == schema.timestamp_key:
            spark_type = T.TimestampType()
        else:
            spark_type = schema.feature(name).data_type.to_spark()
        if spark_type is None:
            spark_type = _inferred_type(frame, name)
        fields.append(T.StructField(name, spark_type, True))
    try:
        return spark.createDataFrame(frame, T.StructType(fields))
    except Exception as error:
        raise SchemaValidationError(
            f"The pandas batch for group '{schema.name}' does not convert to the schema's types "
            f"without loss: {str(error).splitlines()[0]}",
            fix="correct the column types in pandas (nullable integers need dtype 'Int64').",
            group=schema.name,
        ) from error


def _inferred_type(frame: Any, column: str) -> Any:
    """Spark's type for a pandas column, as Arrow infers it."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_type

    return from_arrow_type(
        pa.Schema.from_pandas(frame[[column]], preserve_index=False).field(0).type
    )


def entity_filter_frame(
    spark: SparkSession,
    entity_ids: Any,
    keys: Sequence[str],
    *,
    what: str,
    max_literals: int | None = None,
) -> DataFrame | list[Any]:
    """Entity ids as a list of values (one key, at most `max_literals` of them: an `isin`
    filter costs a driver call per value) or as a DataFrame of key columns (every shape of
    `featurelake.entities` is accepted)."""
    entity_ids = normalize_entity_ids(entity_ids)
    if is_spark_frame(entity_ids) or type(entity_ids).__name__ == "DataFrame":
        frame = to_spark(spark, entity_ids, what=what)
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise SchemaValidationError(
                f"{what} lacks the entity key column(s) {missing}.",
                fix=f"include the columns {list(keys)}.",
            )
        return frame.select(*keys).distinct()
    if isinstance(entity_ids, (str, bytes)) or not isinstance(entity_ids, Sequence):
        entity_ids = [entity_ids]
    values = list(entity_ids)
    if len(keys) == 1 and not any(isinstance(v, (Mapping, tuple, list)) for v in values):
        if max_literals is None or len(values) <= max_literals:
            return values
        # from pandas: sent as Arrow, with no Python worker process to decode the rows
        return spark.createDataFrame(__import__("pandas").DataFrame({keys[0]: values}))
    rows = []
    for value in values:
        if isinstance(value, Mapping):
            rows.append(tuple(value.get(k) for k in keys))
        elif isinstance(value, (tuple, list)) and len(value) == len(keys):
            rows.append(tuple(value))
        else:
            raise SchemaValidationError(
                f"The entity id {value!r} does not give every key of {list(keys)}.",
                fix="pass dicts like {'key': value, ...} or tuples in key order.",
            )
    pandas_frame = __import__("pandas").DataFrame(rows, columns=list(keys))
    return spark.createDataFrame(pandas_frame)
