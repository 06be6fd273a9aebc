"""The tiles of an aggregation group: partial aggregates of its events per key and tile, in Gold.

A tile is the interval `(tile_end - size, tile_end]`; its row holds, for every value the
group aggregates, the partials `windows.tile_partials` computes (count, sum, mean and squared
deviations, min, max, latest `(time, value)`, a HyperLogLog sketch). The size is the greatest
common divisor of the group's windows, at most a day (`tile_size`): 1h for 1h/1d/7d windows,
1d for 1d/7d/30d.

The tiles table (`_tiles/{group}_v{version}`, or `_tiles_{group}_v{version}` in a catalog
database) is refreshed when the group is materialized. Each refresh commit records the Delta
version of the source it covers (in the commit's user metadata), so a reader uses tiles only
when they were computed from exactly the source version it reads, and reads the events
otherwise (same values, more work). A refresh after appends only (every file of the covered
version still there) recomputes the tiles from the earliest tile the new events touch
(`replaceWhere`, one atomic commit); after any other change (overwrite, merge, delete, a new
tile layout) it rewrites the table.

Sources without a Delta version (a catalog view) have no tiles: their events are read as
they are. Nor are tiles read when they hold fewer than 1.5 events per row on average (keys
with about one event per tile): then they would not make a read cheaper (at 1.8 events per
row they made a materialization 1.2x faster in `bench_aggregations.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from math import gcd
from typing import TYPE_CHECKING

from loguru import logger

from featurelake.engines.spark.windows import TILE_END, Tiles, WindowOutput, tile_partials
from featurelake.gold import delta_ops
from featurelake.registry import TableLocation

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MAX_TILE_SIZE = timedelta(days=1)
MIN_EVENTS_PER_TILE = 1.5
"""Reads use tiles only when they hold at least this many events per tile row on average."""
_TAG = "featurelake-tiles:"


def tile_size(windows: Sequence[timedelta]) -> timedelta:
    """The tile size of a group: the greatest common divisor of its windows, at most a day."""
    micros = reduce(gcd, (w // timedelta(microseconds=1) for w in windows))
    return min(timedelta(microseconds=micros), MAX_TILE_SIZE)


@dataclass(frozen=True)
class TileSpec:
    """What the tiles of one group version are made of, and where they live."""

    location: TableLocation
    keys: tuple[str, ...]
    event_time: str
    outputs: tuple[WindowOutput, ...]
    size: timedelta
    what: str

    @property
    def layout(self) -> str:
        """A digest of the tile columns and size: tiles of another layout are rebuilt."""
        names = sorted(f"{o.column}|{o.function}|{o.filter}|{o.result_type}" for o in self.outputs)
        return f"{self.size // timedelta(microseconds=1)}:{'/'.join(names)}"


@dataclass(frozen=True)
class TileState:
    """What the latest commit of a tiles table covers."""

    table_version: int
    source_version: int
    source_files: int
    layout: str


@dataclass(frozen=True)
class TileRefresh:
    """The outcome of `refresh_tiles`: `mode` is "current" (nothing to do), "incremental"
    (tiles after `since` recomputed) or "full"; `rows` the tile rows written."""

    mode: str
    source_version: int
    rows: int
    since: datetime | None = None


def source_version(spark: SparkSession, location: TableLocation) -> int | None:
    """The current Delta version of an event source, or None when it is not a Delta table."""
    try:
        return delta_ops.current_version(spark, location)
    except Exception:  # a view or a non-Delta table: no version to pin tiles to
        return None


def tile_state(spark: SparkSession, spec: TileSpec) -> TileState | None:
    """What the tiles table covers, or None when there is none (or it was changed by hand)."""
    if delta_ops.local_table_exists(spec.location) is False:
        return None
    try:
        commits = delta_ops.history(spark, spec.location, limit=1)
    except Exception:
        return None
    if not commits or not (commits[0].user_metadata or "").startswith(_TAG):
        return None
    recorded = json.loads((commits[0].user_metadata or "")[len(_TAG) :])
    return TileState(
        table_version=commits[0].version,
        source_version=int(recorded["source_version"]),
        source_files=int(recorded["source_files"]),
        layout=str(recorded["layout"]),
    )


def current_tiles(
    spark: SparkSession,
    spec: TileSpec,
    version: int | None,
    source: TableLocation | None = None,
) -> Tiles | None:
    """The tiles computed from source `version`, or None (no tiles, or other versions). With
    `source`, also None when the tiles are not much smaller than the events (fewer than
    `MIN_EVENTS_PER_TILE` events per tile row): reading the events is then as cheap."""
    if version is None:
        return None
    state = tile_state(spark, spec)
    if state is None or state.source_version != version or state.layout != spec.layout:
        return None
    if source is not None:
        tile_rows = delta_ops.row_count(spark, spec.location)
        event_rows = delta_ops.row_count(spark, source)
        if event_rows < tile_rows * MIN_EVENTS_PER_TILE:
            logger.info(
                "Tiles of {} not read: {} tile rows for {} events.",
                spec.what,
                tile_rows,
                event_rows,
            )
            return None
    frame = delta_ops.read(spark, spec.location, version=state.table_version)
    return Tiles(frame, spec.size)


def refresh_tiles(
    spark: SparkSession,
    spec: TileSpec,
    source: TableLocation,
    version: int,
    events: DataFrame,
) -> TileRefresh:
    """Bring the tiles up to source `version` (`events`: the source read at that version)."""
    from pyspark.sql import functions as F

    state = tile_state(spark, spec)
    same_layout = state is not None and state.layout == spec.layout
    if state is not None and same_layout and state.source_version == version:
        return TileRefresh("current", version, 0)
    files = _files(spark, source, version)
    tag = _TAG + json.dumps(
        {"source_version": version, "source_files": len(files), "layout": spec.layout}
    )
    since = None
    if state is not None and same_layout and state.source_version < version:
        since = _earliest_new_tile(spark, spec, source, state, version, files)
    if since is None:
        partials = tile_partials(
            events, spec.keys, spec.event_time, spec.outputs, spec.size, what=spec.what
        )
        delta_ops.overwrite(partials, spec.location, tag, new_schema=True)
        mode = "full"
    elif since == _NOTHING_NEW:  # record that the tiles cover this version too
        delta_ops.set_properties(
            spark, spec.location, {"featurelake.tiles.source": str(version)}, tag
        )
        mode = "current"
    else:
        time_us = F.unix_micros(F.col(f"`{spec.event_time}`").cast("timestamp"))
        fresh = events.where(time_us > F.lit(since))
        partials = tile_partials(
            fresh, spec.keys, spec.event_time, spec.outputs, spec.size, what=spec.what
        )
        replace = f"`{TILE_END}` > timestamp_micros({int(since)})"
        delta_ops.overwrite(partials, spec.location, tag, replace_where=replace)
        mode = "incremental"
    written = 0 if mode == "current" else delta_ops.history(spark, spec.location, 1)[0].rows_written
    start = (
        None if since is None or since == _NOTHING_NEW else _EPOCH + timedelta(microseconds=since)
    )
    logger.info(
        "Tiles of {} refreshed ({}) to source version {}: {} rows written{}.",
        spec.what,
        mode,
        version,
        written,
        f" after {start}" if start else "",
    )
    return TileRefresh(mode, version, written, start)


_EPOCH = datetime(1970, 1, 1)
_NOTHING_NEW = -(2**63)


def _files(spark: SparkSession, source: TableLocation, version: int) -> set[str]:
    """The data files of the source at `version` (from the Delta log, no data scan)."""
    return {_name(f) for f in delta_ops.read(spark, source, version=version).inputFiles()}


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _earliest_new_tile(
    spark: SparkSession,
    spec: TileSpec,
    source: TableLocation,
    state: TileState,
    version: int,
    files: set[str],
) -> int | None:
    """The start (epoch microseconds) of the earliest tile the events added since the tiles'
    version fall in; `_NOTHING_NEW` when no file was added; None when the source changed
    otherwise (files removed): then the tiles are rebuilt."""
    from pyspark.sql import functions as F

    before = _files(spark, source, state.source_version)
    if len(before) != state.source_files or not before <= files:
        return None
    added = sorted(files - before)
    if not added:
        return _NOTHING_NEW
    new_events = delta_ops.read(spark, source, version=version).where(
        F.col("_metadata.file_name").isin(added)
    )
    time_us = F.unix_micros(F.col(f"`{spec.event_time}`").cast("timestamp"))
    row = new_events.agg(F.min(time_us)).first()
    earliest = row[0] if row is not None else None
    if earliest is None:
        return _NOTHING_NEW
    size = spec.size // timedelta(microseconds=1)
    return int(earliest) - ((int(earliest) - 1) % size) - 1  # the tile (start, start + size]
