"""How the CLI shows things: rich tables for people, JSON for scripts, status on stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.table import Table

from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def to_jsonable(value: Any) -> Any:
    """Datetimes, paths, enums, sets, tuples and dataclass records as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def when(value: datetime | None, *, short: bool = False) -> str:
    """`2024-03-01 12:00:00 UTC (3 h ago)` (or `2024-03-01 12:00 (3 h ago)`), or `-`."""
    if value is None:
        return "-"
    stamp = f"{value:%Y-%m-%d %H:%M}" if short else f"{value:%Y-%m-%d %H:%M:%S} UTC"
    return f"{stamp} ({ago(utc_now() - value)})"


def ago(age: timedelta) -> str:
    seconds = age.total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


class StatusLine(Protocol):
    """What a command tells the status display while it works."""

    def step(self, text: str) -> None:
        """The step the command is in now."""

    def rows(self, count: int) -> None:
        """Rows done so far (shown by the live progress display)."""


class _Spinner:
    def __init__(self, status: Any) -> None:
        self._status = status

    def step(self, text: str) -> None:
        self._status.update(text)

    def rows(self, count: int) -> None:
        pass


class _Lines:
    def __init__(self, console: Console) -> None:
        self._console = console

    def step(self, text: str) -> None:
        self._console.print(f"{text}...", markup=False)

    def rows(self, count: int) -> None:
        pass


@dataclass
class Output:
    """stdout for results (a table or one JSON document), stderr for progress and errors."""

    as_json: bool = False
    console: Console = field(
        default_factory=lambda: Console(file=sys.stdout, highlight=False, soft_wrap=False)
    )
    err: Console = field(
        default_factory=lambda: Console(file=sys.stderr, highlight=False, soft_wrap=True)
    )

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "", *, markup: bool = False, soft_wrap: bool | None = None) -> None:
        """One line of result text (`soft_wrap=True`: never broken, for commands to copy)."""
        if not self.as_json:
            self.console.print(text, markup=markup, soft_wrap=soft_wrap)

    def table(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
    ) -> None:
        if self.as_json:
            return
        table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
        for index, column in enumerate(columns):
            table.add_column(column, overflow="fold", no_wrap=index == 0)
        for row in rows:
            table.add_row(*["-" if cell is None else str(cell) for cell in row])
        self.console.print(table)

    @contextmanager
    def status(self, message: str, *, spark: SparkSession | None = None) -> Iterator[StatusLine]:
        """While the block runs: on a terminal a spinner, or with `spark` a live display of
        Spark's task progress (not with --json); elsewhere one plain line on stderr."""
        if self.err.is_terminal and spark is not None and not self.as_json:
            from featurelake.cli.progress import ProgressDisplay, SparkProgress

            with ProgressDisplay(self.err, message) as display:
                progress = SparkProgress(spark, display.spark)
                try:
                    progress.start()
                    watching = True
                except Exception:  # no tracker or handler on this session: no task counts
                    watching = False
                try:
                    yield display
                finally:
                    if watching:
                        progress.stop()
        elif self.err.is_terminal:
            with self.err.status(message) as spinner:
                yield _Spinner(spinner)
        else:
            lines = _Lines(self.err)
            lines.step(message)
            yield lines
