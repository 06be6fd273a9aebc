"""A sync's Gold reads with delta-rs on the driver: no Spark job, for path tables.

The table's log gives the current version, the recent commits and the row count (add actions),
so choosing an engine needs no Spark. Small reads (a small table, a short change feed) are
done here too: the snapshot or the change feed comes as Arrow, and `arrow_rows.latest_arrow`
picks each entity's latest row as Spark would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.errors import MaterializationError, first_line
from featurelake.online.arrow_rows import without_views
from featurelake.online.sync_history import HISTORY_WINDOW, Commit, commit
from featurelake.schema import INGESTED_AT, FeatureGroupSchema

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from featurelake.registry import TableLocation

UPSERTS = ("insert", "update_postimage")


class ChangeFeedUnavailableError(Exception):
    """The table has no change feed for the range (a full sync follows)."""


@dataclass(frozen=True)
class DeltaSource:
    """A Gold table opened with delta-rs at its current version."""

    path: str
    table: DeltaTable

    @classmethod
    def open(cls, location: TableLocation, schema: FeatureGroupSchema) -> DeltaSource | None:
        """The table at a path location, or None where delta-rs cannot read it (a catalog
        table, a reader feature delta-rs lacks): Spark reads those. A path without a table
        raises MaterializationError."""
        from featurelake.gold.delta_reader import check_readable
        from featurelake.storage import is_delta_table, open_table

        path = location.path
        if location.table_name or not path:
            return None
        try:
            if not is_delta_table(path):
                raise MaterializationError(
                    f"Group '{schema.name}' v{schema.version} has no data yet ({location}), "
                    "so there is nothing to sync online.",
                    fix=f"write features first: store.write_features('{schema.name}', df).",
                    group=schema.name,
                )
            table = open_table(path)
            check_readable(path, table)
        except MaterializationError:
            raise
        except Exception as error:
            logger.debug("delta-rs does not read {} ({}); Spark will", path, first_line(error))
            return None
        return cls(path, table)

    @property
    def version(self) -> int:
        return int(self.table.version())

    def history(self) -> list[Commit]:
        """The newest `HISTORY_WINDOW` commits, newest first."""
        entries = self.table.history(HISTORY_WINDOW)
        return [
            commit(
                e["version"],
                e.get("operation", ""),
                e.get("operationParameters"),
                e.get("operationMetrics"),
            )
            for e in sorted(entries, key=lambda e: -int(e["version"]))
        ]

    def size(self) -> int:
        """Bytes of the data files of the current version."""
        import pyarrow as pa
        import pyarrow.compute as pc

        actions = pa.table(self.table.get_add_actions(flatten=True))
        return int(pc.sum(actions.column("size_bytes")).as_py() or 0)

    def rows(self, schema: FeatureGroupSchema, version: int) -> pa.Table:
        """Every row of the table at `version` (the group's columns)."""
        from featurelake.gold.delta_reader import open_snapshot, read_arrow

        snapshot = open_snapshot(self.path, version=version)
        return without_views(read_arrow(snapshot, columns(schema, snapshot.columns)))

    def changes(self, schema: FeatureGroupSchema, start: Any, current: int) -> pa.Table:
        """The change feed from `start` (a version, or a time) to `current`, inclusive."""
        import pyarrow as pa

        configuration = self.table.metadata().configuration
        if str(configuration.get("delta.enableChangeDataFeed", "false")).lower() != "true":
            # delta-rs would read added files as inserts; Spark's answer is that there is no
            # feed, and a full sync follows.
            raise ChangeFeedUnavailableError(
                f"change data is not recorded for the table at {self.path} "
                "(delta.enableChangeDataFeed is not true)"
            )
        if isinstance(start, int):
            reader = self.table.load_cdf(starting_version=start, ending_version=current)
        else:
            when = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            reader = self.table.load_cdf(
                starting_timestamp=when.isoformat(), ending_version=current
            )
        return without_views(pa.table(reader))

    def rows_of(self, schema: FeatureGroupSchema, version: int, entities: pa.Table) -> pa.Table:
        """The rows at `version` of the entities in `entities` (key columns)."""
        from featurelake.gold.delta_reader import ScanFilter, open_snapshot, read_arrow

        keys = list(schema.entity_keys)
        snapshot = open_snapshot(self.path, version=version)
        scan = ScanFilter(values={k: entities.column(k).unique().to_pylist() for k in keys})
        rows = read_arrow(snapshot, columns(schema, snapshot.columns), scan)
        return without_views(rows).join(entities, keys, join_type="left semi")


def columns(schema: FeatureGroupSchema, present: list[str]) -> list[str]:
    """The group's columns of a Gold table (features added later may be absent)."""
    wanted = [*schema.entity_keys, schema.timestamp_key, *schema.feature_names, INGESTED_AT]
    return [c for c in wanted if c in present]


def split_changes(changes: pa.Table, schema: FeatureGroupSchema) -> tuple[pa.Table, pa.Table]:
    """(inserted and updated rows, keys of the entities that lost a row) of a change feed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = changes.column("_change_type").cast(pa.string())
    upserts = changes.filter(pc.is_in(kind, pa.array(UPSERTS)))
    keys = list(schema.entity_keys)
    removed = changes.filter(pc.equal(kind, "delete")).select(keys)
    return upserts, removed.group_by(keys).aggregate([])
