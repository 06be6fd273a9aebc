"""A Gold table's recent commits, and how much a sync from a version would read.

The commit log says, before any data is read, about how many bytes a change feed reads and
whether it can hold deletes (from each commit's operation and metrics), so a sync can pick its
engine and size its reads without a scan. Spark (`DESCRIBE HISTORY`) and delta-rs give the same
log entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

HISTORY_WINDOW = 50
_REPLACING = ("REPLACE TABLE", "CREATE OR REPLACE TABLE", "RESTORE")
_NO_DATA_CHANGE = (
    "CREATE TABLE",
    "SET TBLPROPERTIES",
    "UNSET TBLPROPERTIES",
    "OPTIMIZE",
    "VACUUM START",
    "VACUUM END",
    "ADD COLUMNS",
    "CHANGE COLUMN",
    "UPGRADE PROTOCOL",
    "ADD CONSTRAINT",
    "DROP CONSTRAINT",
    "ADD FEATURE",
    "DROP FEATURE",
)


@dataclass(frozen=True)
class Commit:
    """One log entry: its version, operation, metrics and whether it removed rows wholesale
    (an overwrite, a replace or a restore)."""

    version: int
    operation: str
    metrics: dict[str, str]
    removes: bool


def commit(
    version: int,
    operation: str,
    parameters: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
) -> Commit:
    """A `Commit` from the fields of a history row (Spark or delta-rs)."""
    mode = str((parameters or {}).get("mode", "")).lower()
    operation = str(operation).upper()
    removes = mode == "overwrite" or operation.startswith(_REPLACING)
    return Commit(
        int(version), operation, {str(k): str(v) for k, v in (metrics or {}).items()}, removes
    )


def covered(history: list[Commit], start: int | datetime | None) -> list[Commit] | None:
    """The commits from version `start` on, or None when `history` does not reach back to it
    (or `start` is a time or absent: then the whole table is read)."""
    if not isinstance(start, int) or not history or history[-1].version > start:
        return None
    return [c for c in history if c.version >= start]


def change_bytes(commits: list[Commit], table_bytes: int) -> int:
    """About the bytes the change feed of `commits` reads: what each commit added, plus the
    whole table (`table_bytes`) for a commit that removed rows wholesale."""
    total = 0
    for entry in commits:
        if entry.removes:
            total += table_bytes
        total += sum(
            int(value)
            for name, value in entry.metrics.items()
            if name.endswith("Bytes") and ("Added" in name or "Output" in name) and value.isdigit()
        )
    return total


def may_delete(commits: list[Commit]) -> bool:
    """Whether the change feed of `commits` can hold deleted rows (False only when every
    commit says it deleted none: appends, merges and updates without deletes)."""
    for entry in commits:
        if entry.removes:
            return True
        metrics = {name.replace("_", "").lower(): value for name, value in entry.metrics.items()}
        deleted = metrics.get("numtargetrowsdeleted", metrics.get("numdeletedrows"))
        if deleted is not None:
            if deleted != "0":
                return True
            continue
        if entry.operation.startswith(("WRITE", "STREAMING UPDATE", "UPDATE", *_NO_DATA_CHANGE)):
            continue
        return True
    return False
