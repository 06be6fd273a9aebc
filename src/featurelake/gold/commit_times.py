"""Which version of a Delta table was current at a time: one rule for every engine.

Delta Lake's Spark reader dates a commit by its log file's modification time, made strictly
increasing (a commit no later than the one before it counts as one millisecond after it), and a
read `timestampAsOf` a time gets the latest commit at or before it. delta-rs dates commits by
the same modification times without that last step, so two commits within one tick of the
storage's clock (object stores keep whole seconds) resolve differently in the two engines.
featurelake turns a time into a version here, by Spark's rule, and every engine then reads that
version: `store.history(group)` times and `as_of_timestamp` reads agree in every engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from featurelake.errors import MaterializationError
from featurelake.times import utc_aware

_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
_TICK = timedelta(milliseconds=1)


@dataclass(frozen=True)
class CommitTime:
    """A commit of a Delta table and the time it counts as made (aware, UTC)."""

    version: int
    timestamp: datetime


def commit_times(path: str) -> list[CommitTime]:
    """The commits in the log of the table at `path`, oldest first, dated by Spark's rule."""
    from pyarrow import fs

    from featurelake import storage

    files, inner = storage.filesystem(f"{path.rstrip('/')}/_delta_log")
    selector = fs.FileSelector(inner, allow_not_found=True, recursive=False)
    found: list[tuple[int, datetime]] = []
    for info in files.get_file_info(selector):
        match = _COMMIT_FILE.match(info.base_name)
        if match and info.mtime is not None:
            found.append((int(match.group(1)), _whole_milliseconds(info.mtime)))
    commits: list[CommitTime] = []
    for version, modified in sorted(found):
        if commits and modified <= commits[-1].timestamp:
            modified = commits[-1].timestamp + _TICK
        commits.append(CommitTime(version, modified))
    return commits


def version_at(path: str, timestamp: datetime | str) -> int:
    """The version of the table at `path` current at `timestamp`: its latest commit at or
    before it (a naive time or text is UTC)."""
    when = parse_time(timestamp)
    commits = commit_times(path)
    if not commits:
        raise MaterializationError(
            f"There is no Delta table at {path}",
            fix="write the group first, or check the path.",
            path=path,
        )
    earlier = [c.version for c in commits if c.timestamp <= when]
    if not earlier:
        first = f" (its first commit is at {commits[0].timestamp:%Y-%m-%d %H:%M:%S.%f} UTC)"
        raise MaterializationError(
            f"The Delta table at {path} has no version as of {when:%Y-%m-%d %H:%M:%S.%f} UTC"
            + first,
            fix="ask for a time within the table's history (store.history(group)).",
            path=path,
        )
    return earlier[-1]


def parse_time(timestamp: datetime | str) -> datetime:
    """`timestamp` as an aware UTC datetime; text in ISO 8601 ('2024-01-05 12:00:00')."""
    if isinstance(timestamp, str):
        try:
            timestamp = datetime.fromisoformat(timestamp.strip())
        except ValueError as error:
            raise MaterializationError(
                f"'{timestamp}' is not a time to read a Delta table as of",
                fix="give a datetime or ISO 8601 text such as '2024-01-05 12:00:00'.",
            ) from error
    return utc_aware(timestamp)


def _whole_milliseconds(value: datetime) -> datetime:
    aware = utc_aware(value)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


__all__ = ["CommitTime", "commit_times", "parse_time", "version_at"]
