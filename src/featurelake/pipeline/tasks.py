"""The operations behind the CLI, the jobs and the nodes: one implementation for all three."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurelake.errors import ConfigurationError
from featurelake.pipeline.sources import (
    looks_like_table,
    parse_time_range,
    read_source,
    write_output,
)
from featurelake.registry import Lineage
from featurelake.schema import FeatureGroupSchema, parse_refs
from featurelake.schema.keys import IDENTIFIER
from featurelake.serving.store import FeatureStore
from featurelake.stores.materialized import WriteMode, WriteResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.engines.spark.training import TrainingSetManifest


def arrow_safe(frame: Any) -> Any:
    """A pandas frame whose string columns PySpark 4.0 can convert with Arrow.

    pandas 3 keeps strings in Arrow arrays; when one has several chunks (any `toPandas()` of
    a multi-partition DataFrame), PySpark 4.0's Arrow path fails ("Cannot convert
    pyarrow.lib.ChunkedArray to pyarrow.lib.Array"). Plain object columns convert fine.
    Anything that is not a pandas DataFrame is returned as it is.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        return frame
    strings = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    if not strings:
        return frame
    fixed = frame.copy()
    for column in strings:
        fixed[column] = fixed[column].astype(object).where(fixed[column].notna(), None)
    return fixed


def parse_mode(mode: str | WriteMode) -> WriteMode:
    """A write mode from its name, or a ConfigurationError listing the modes."""
    try:
        return WriteMode(str(mode).lower())
    except ValueError:
        raise ConfigurationError(
            f"'{mode}' is not a write mode.",
            fix="use one of: "
            + ", ".join(m.value for m in WriteMode)
            + " (give a start and an end to backfill a time range).",
        ) from None


def materialize(
    store: FeatureStore,
    group: str | FeatureGroupSchema,
    source: Any,
    *,
    mode: str | WriteMode = WriteMode.APPEND,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    source_format: str = "auto",
    job: str | None = None,
) -> WriteResult:
    """Write `source` (a DataFrame, or a path / table name) into the group's Gold table.

    With `start` and `end`, the source is cut to `start <= event time < end` and that range of
    the table is replaced (a backfill); otherwise it is written with `mode`.
    """
    write_mode = parse_mode(mode)
    time_range = parse_time_range(start, end)
    schema = store.resolve_group(group)
    named = isinstance(source, str)
    frame = read_source(store.spark, source, source_format) if named else arrow_safe(source)
    lineage = Lineage(sources=(source_name(source),) if named else (), job=job)
    if time_range is None:
        return store.write_features(schema, frame, write_mode, lineage=lineage)
    if write_mode is not WriteMode.APPEND:
        raise ConfigurationError(
            f"A backfill replaces the range it is given; the mode '{write_mode.value}' does not "
            "apply to it.",
            fix="drop the mode, or drop the start and end to write the whole source.",
        )
    begin, finish = time_range
    frame = _in_range(store, frame, schema.timestamp_key, begin, finish)
    return store.backfill(schema, frame, begin, finish, lineage=lineage)


def source_name(source: str) -> str:
    """How lineage records a source: tables and URIs as given, local paths made absolute."""
    if looks_like_table(source) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", source):
        return source
    return str(Path(source).resolve())


def _in_range(
    store: FeatureStore, frame: Any, column: str, begin: datetime, finish: datetime
) -> DataFrame:
    from pyspark.sql import functions as F

    from featurelake.engines.spark.frames import to_spark

    spark_frame = to_spark(store.spark, frame, what="The backfill source")
    if column not in spark_frame.columns:
        return spark_frame  # the write names the missing column
    ts = F.col(column).cast("timestamp")
    return spark_frame.where((ts >= F.lit(begin)) & (ts < F.lit(finish)))


@dataclass(frozen=True)
class TrainingSetOutput:
    """A training set written to `output`: its size and the manifest that rebuilds it."""

    output: str
    format: str
    rows: int
    columns: tuple[str, ...]
    manifest: TrainingSetManifest

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "format": self.format,
            "rows": self.rows,
            "columns": list(self.columns),
            "manifest": self.manifest.to_dict(),
        }


def training_set(
    store: FeatureStore,
    entities: Any,
    feature_refs: str | Sequence[str],
    out: str,
    *,
    out_format: str = "parquet",
    overwrite: bool = False,
    ttl: str | timedelta | None = None,
    timestamp_column: str | None = None,
    fill: str = "none",
    name: str | None = None,
    entities_format: str = "auto",
) -> TrainingSetOutput:
    """Build a point-in-time-correct training set for `entities` and write it to `out`.

    `entities` is a DataFrame or a path / table holding the entity keys and an event time per
    row. With `name`, the manifest and the entity rows are kept in the store, so the set can
    be rebuilt exactly (`store.rebuild(name)`).
    """
    refs = feature_ref_list(feature_refs)
    frame = (
        read_source(store.spark, entities, entities_format, what="entity data")
        if isinstance(entities, str)
        else arrow_safe(entities)
    )
    built = store.get_training_set(
        frame, refs, ttl=ttl, timestamp_column=timestamp_column, fill=fill, name=name
    )
    write_output(built.df, out, out_format, overwrite=overwrite)
    written = read_source(store.spark, out, "table" if out_format == "table" else out_format)
    return TrainingSetOutput(
        output=out,
        format=out_format,
        rows=written.count(),
        columns=tuple(written.columns),
        manifest=built.manifest,
    )


def write_summary(result: WriteResult) -> dict[str, Any]:
    """A JSON-friendly dict of a write (XCom, Kedro datasets, `--json`)."""
    return dataclasses.asdict(result)


def feature_ref_list(refs: str | Sequence[str]) -> list[str]:
    """Refs from a list or comma-separated text, checked for syntax (a bare feature name is
    kept, and resolved to its group when read)."""
    items: list[str] = []
    for item in [refs] if isinstance(refs, str) else list(refs):
        items.extend(part.strip() for part in str(item).split(",") if part.strip())
    return [item if IDENTIFIER.match(item) else str(parse_refs(item)[0]) for item in items]
