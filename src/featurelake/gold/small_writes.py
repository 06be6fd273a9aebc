"""Small writes without Spark: a pandas or Arrow batch of a few rows written by delta-rs.

A cold process pays Spark's start (~20 s) before its first write; a batch of up to
`small_write_max_rows` rows (a server's write, a notebook's fix, a test fixture) needs none of
it. This module does what the Spark write path does, on Arrow (`gold.arrow_checks`):

- conform the batch to the group's schema with the same lossless casts and the same errors
  (`schema.validation`: missing/extra columns, lossy types, keys that cannot be keys);
- check the same row rules (`rule_specs`) and raise the same error with the same sample;
- create the Gold table as Spark does (same columns, nullability, partitions, Change Data
  Feed, hence the same protocol) and commit append / overwrite / merge on keys + event time
  with an `_ingested_at` column, tagged with a token in `userMetadata` like Spark's commits.

A table whose protocol delta-rs cannot write (deletion vectors, column mapping, ...) or a
catalog table is left to Spark: `spark_needed` says why. Commits go through
`storage.commit_verified`, so a delta-rs commit racing a Spark writer on the same table is
retried on Delta's optimistic concurrency like the Spark path's, and never lost.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurelake import storage
from featurelake.gold.arrow_checks import check_rows, conform, sql_type_of
from featurelake.gold.delta_ops import GOLD_TABLE_PROPERTIES, local_table_exists, new_token
from featurelake.registry import TableLocation, quote_identifier
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, SqlType
from featurelake.schema.validation import rule_specs

if TYPE_CHECKING:
    import pyarrow as pa

MODES = ("append", "overwrite", "merge")
DELTA_RS_PROPERTIES = frozenset({"delta.enableChangeDataFeed"})
"""Gold table properties delta-rs writes correctly (others: Spark creates the table)."""
GOLD_PROTOCOL: dict[str, Any] = {
    "minReaderVersion": 1,
    "minWriterVersion": 7,
    "writerFeatures": ["invariants", "changeDataFeed", "appendOnly"],
}
"""The protocol Spark's Delta gives a new Gold table (CREATE TABLE with Change Data Feed);
`tests/offline/test_small_writes.py` compares the two."""
WRITER_FEATURES = frozenset(
    {"appendOnly", "invariants", "checkConstraints", "changeDataFeed", "timestampNtz"}
)
"""Table features delta-rs writes correctly (others, e.g. deletionVectors, go to Spark)."""


@dataclass(frozen=True)
class SmallCommit:
    """What a delta-rs write committed."""

    version: int
    rows_written: int
    row_count: int


def is_small(data: Any, max_rows: int) -> bool:
    """True for a pandas DataFrame or an Arrow table of at most `max_rows` rows (0: never)."""
    if max_rows <= 0:
        return False
    kind = type(data)
    if kind.__module__.startswith("pandas") and kind.__name__ == "DataFrame":
        return len(data) <= max_rows
    if kind.__module__.startswith("pyarrow") and kind.__name__ in ("Table", "RecordBatch"):
        return int(data.num_rows) <= max_rows
    return False


def spark_needed(
    location: TableLocation,
    schema: FeatureGroupSchema,
    mode: str,
    hooks: Sequence[Callable[..., Any]] = (),
    *,
    deletion_vectors: bool = False,
) -> str | None:
    """Why this write must take the Spark path, or None when delta-rs can do it."""
    if mode not in MODES:
        return f"mode {mode} has no delta-rs write"
    exists = local_table_exists(location)
    if exists is None:
        return f"{location} is not a path table delta-rs opens"
    for hook in hooks:
        passes = getattr(hook, "passes_through", None)
        if passes is None or not passes(schema, mode):
            return f"the batch hook {getattr(hook, '__name__', type(hook).__name__)} needs it"
    if exists:
        return unwritable_protocol(str(location.path))
    if storage.is_object_store(str(location.path)):
        return "creating a Gold table on object storage (no put-if-absent here)"
    if deletion_vectors:
        return "new Gold tables keep deletion vectors (gold_deletion_vectors), Spark creates them"
    unknown = sorted(set(GOLD_TABLE_PROPERTIES) - DELTA_RS_PROPERTIES)
    return f"new Gold tables have the properties {unknown}" if unknown else None


def unwritable_protocol(path: str) -> str | None:
    """Why delta-rs must not write the table at `path` (its protocol), or None."""
    protocol = storage.open_table(path).protocol()
    features = set(protocol.writer_features or ()) | set(protocol.reader_features or ())
    if protocol.min_reader_version > 1 and not protocol.reader_features:
        return f"reader version {protocol.min_reader_version} (column mapping)"
    if protocol.min_writer_version > 4 and protocol.writer_features is None:
        return f"writer version {protocol.min_writer_version}"
    unsupported = sorted(features - WRITER_FEATURES)
    if unsupported:
        return f"the table features {unsupported}"
    return None


def write(
    schema: FeatureGroupSchema,
    location: TableLocation,
    data: Any,
    mode: str,
    *,
    retry: Callable[[str, Callable[[], Any]], Any],
) -> SmallCommit:
    """Validate `data` and write it to the group's Gold table with delta-rs.

    `retry(what, operation)` runs a commit again on a Delta conflict (the store's retries).
    A refused batch raises SchemaValidationError before anything is created or committed.
    """
    path = str(location.path)
    key_types = existing_key_types(path, schema)
    batch = conform(data, schema, key_types)
    check_rows(batch, schema, rule_specs(schema, unique_key_time=mode == "merge"))
    now = datetime.now(UTC)
    import pyarrow as pa

    stamped = batch.append_column(
        pa.field(INGESTED_AT, pa.timestamp("us", tz="UTC")),
        pa.array([now] * batch.num_rows, pa.timestamp("us", tz="UTC")),
    )
    retry(f"creating the Gold table {location}", lambda: create_table(path, schema, stamped))
    token = new_token()
    what = f"writing group '{schema.name}' v{schema.version} ({mode})"

    def attempt() -> tuple[int, int | None]:
        return storage.commit_verified(
            path, lambda props: _commit(path, schema, stamped, mode, props, token)
        )

    rows_written, version = retry(what, attempt)
    if version is None:  # a merge that changed nothing still reports the current version
        version = int(storage.open_table(path).version())
    return SmallCommit(version, int(rows_written), row_count(path))


# -- the table --------------------------------------------------------------------------------


def existing_key_types(path: str, schema: FeatureGroupSchema) -> dict[str, SqlType]:
    """The entity key types of the table at `path` (empty when there is none yet)."""
    if not storage.is_delta_table(path):
        return {}
    import pyarrow as pa

    fields = pa.schema(storage.open_table(path).schema().to_arrow())
    types = {}
    for key in schema.entity_keys:
        if key in fields.names:
            found = sql_type_of(fields.field(key).type)
            if found is not None:
                types[key] = found
    return types


def create_table(path: str, schema: FeatureGroupSchema, batch: pa.Table) -> None:
    """Create the Gold table as Spark's `delta_ops.create_table` does: the same columns and
    nullability, partitions, properties and protocol (`GOLD_PROTOCOL`), in one commit put only
    if absent (a no-op when the table exists or another writer creates it at once)."""
    if storage.is_delta_table(path):
        return
    import pyarrow as pa
    from deltalake import Schema

    not_null = {*schema.entity_keys, schema.timestamp_key}
    fields = [pa.field(f.name, f.type, nullable=f.name not in not_null) for f in batch.schema]
    now = int(time.time() * 1000)
    partitions = list(schema.partition_columns)
    actions = [
        {
            "commitInfo": {
                "timestamp": now,
                "operation": "CREATE TABLE",
                "operationParameters": {
                    "partitionBy": json.dumps(partitions),
                    "description": None,
                    "isManaged": "false",
                    "properties": json.dumps(GOLD_TABLE_PROPERTIES),
                },
                "isBlindAppend": True,
                "engineInfo": f"featurelake delta-rs:py-{deltalake_version()}",
            }
        },
        {
            "metaData": {
                "id": str(uuid.uuid4()),
                "format": {"provider": "parquet", "options": {}},
                "schemaString": Schema.from_arrow(pa.schema(fields)).to_json(),
                "partitionColumns": partitions,
                "configuration": dict(GOLD_TABLE_PROPERTIES),
                "createdTime": now,
            }
        },
        {"protocol": GOLD_PROTOCOL},
    ]
    _, folder = storage.filesystem(path)
    log = Path(folder) / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    staged = log / f".{uuid.uuid4().hex}.json.tmp"
    staged.write_text("".join(json.dumps(a) + "\n" for a in actions))
    try:
        os.link(staged, log / f"{0:020d}.json")  # put if absent, like delta-rs' local commits
    except FileExistsError:
        pass
    finally:
        staged.unlink()


def deltalake_version() -> str:
    from importlib.metadata import version

    return version("deltalake")


def _commit(
    path: str, schema: FeatureGroupSchema, batch: pa.Table, mode: str, properties: Any, token: str
) -> int:
    """One delta-rs commit of `batch`; the rows it added or changed."""
    from deltalake import CommitProperties

    tagged = CommitProperties(
        custom_metadata={**(properties.custom_metadata or {}), "userMetadata": token}
        if properties is not None
        else {"userMetadata": token}
    )
    table = storage.open_table(path)
    import pyarrow as pa

    layout = pa.schema(table.schema().to_arrow())
    data = (
        batch.select(layout.names).cast(
            pa.schema([pa.field(f.name, f.type, nullable=True) for f in layout])
        )
        if set(layout.names) == set(batch.schema.names)
        else batch
    )
    if mode == "merge":
        on = [*schema.entity_keys, schema.timestamp_key]
        predicate = " AND ".join(f"t.{quote_identifier(c)} = s.{quote_identifier(c)}" for c in on)
        metrics = (
            table.merge(
                data, predicate, source_alias="s", target_alias="t", commit_properties=tagged
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return int(metrics.get("num_target_rows_inserted", 0)) + int(
            metrics.get("num_target_rows_updated", 0)
        )
    storage.write_table(path, data, mode=mode, commit_properties=tagged)
    return int(data.num_rows)


def row_count(path: str) -> int:
    """Rows in the current version, from the log's file statistics."""
    import pyarrow as pa

    actions = pa.table(storage.open_table(path).get_add_actions(flatten=True))
    counts = actions.column("num_records").to_pylist() if actions.num_rows else []
    if all(c is not None for c in counts):
        return int(sum(counts))
    return int(storage.open_table(path).to_pyarrow_table(columns=[]).num_rows)
