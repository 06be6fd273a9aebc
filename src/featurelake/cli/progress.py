"""Spark's job and stage progress for the CLI's live display.

`SparkProgress` collects, for the block of work it wraps, how many tasks of Spark's jobs are
done of how many: on a classic session by polling the status tracker from a thread (only the
jobs started after it began count), over Spark Connect through the session's progress handler
(`registerProgressHandler`, pyspark 4.0), which the server feeds while a query runs.
`ProgressDisplay` shows it with Rich on stderr: the step featurelake is in, a bar of tasks
done of total, jobs, bytes read (Connect) and rows when featurelake knows them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

POLL_SECONDS = 0.25


@dataclass(frozen=True)
class SparkCounts:
    """Spark's progress so far: tasks done of total over the stages of the jobs seen."""

    jobs: int = 0
    stages: int = 0
    tasks_total: int = 0
    tasks_done: int = 0
    tasks_running: int = 0
    bytes_read: int = 0


@dataclass
class _Stage:
    tasks: int
    done: int
    running: int = 0
    bytes_read: int = 0


@dataclass
class _Seen:
    """Stages by (job or operation, stage id); updated from one thread, read from another."""

    stages: dict[tuple[str, int], _Stage] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    inflight: dict[str, int] = field(default_factory=dict)  # running tasks per operation
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self) -> SparkCounts:
        with self.lock:
            stages = list(self.stages.values())
            return SparkCounts(
                jobs=len(self.groups),
                stages=len(stages),
                tasks_total=sum(s.tasks for s in stages),
                tasks_done=sum(s.done for s in stages),
                tasks_running=sum(s.running for s in stages) + sum(self.inflight.values()),
                bytes_read=sum(s.bytes_read for s in stages),
            )


class SparkProgress:
    """Watches the Spark jobs run while it is active; `counts()` says how far they got.

    `on_update` is called (from a poller or gRPC thread) whenever new counts arrive.
    """

    def __init__(
        self,
        spark: SparkSession,
        on_update: Callable[[SparkCounts], None] | None = None,
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        from featurelake.session import is_connect_session

        self.spark = spark
        self.on_update = on_update
        self.poll_seconds = poll_seconds
        self.connect = is_connect_session(spark)
        self._seen = _Seen()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._before: set[int] = set()
        self._tracker: Any = None

    def counts(self) -> SparkCounts:
        return self._seen.counts()

    def start(self) -> SparkProgress:
        if self.connect:
            self.spark.registerProgressHandler(self._on_connect_progress)
        else:
            self._tracker = self.spark.sparkContext.statusTracker()
            self._before = set(self._tracker.getJobIdsForGroup(None))
            self._thread = threading.Thread(
                target=self._poll_loop, name="featurelake-spark-progress", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self.connect:
            with contextlib.suppress(ValueError):  # already removed (clearProgressHandlers)
                self.spark.removeProgressHandler(self._on_connect_progress)
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._poll()  # the jobs that ended since the last poll

    def __enter__(self) -> SparkProgress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- classic: the status tracker -------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self._poll()

    def _poll(self) -> None:
        tracker = self._tracker
        if tracker is None:
            return
        try:
            jobs = sorted(set(tracker.getJobIdsForGroup(None)) - self._before)
            found: dict[tuple[str, int], _Stage] = {}
            for job in jobs:
                info = tracker.getJobInfo(job)
                if info is None:
                    continue
                finished = str(info.status) == "SUCCEEDED"
                for stage_id in info.stageIds:
                    stage = tracker.getStageInfo(stage_id)
                    if stage is None:
                        continue
                    if finished and stage.numCompletedTasks < stage.numTasks:
                        continue  # skipped: its output came from an earlier stage
                    # Keyed by stage alone: a shuffle stage reused by a later job counts once.
                    found[("", int(stage_id))] = _Stage(
                        stage.numTasks, stage.numCompletedTasks, stage.numActiveTasks
                    )
        except Exception:  # the session is stopping: keep the last counts
            return
        with self._seen.lock:
            self._seen.groups.update(str(j) for j in jobs)
            for key, stage in found.items():
                self._seen.stages[key] = stage
            for key in [k for k in self._seen.stages if k not in found]:
                stage = self._seen.stages[key]
                if stage.done < stage.tasks:  # a pending stage later skipped
                    del self._seen.stages[key]
        self._notify()

    # -- Spark Connect: the progress handler ------------------------------------------------

    def _on_connect_progress(
        self,
        stages: Iterable[Any] | None = None,
        inflight_tasks: int = 0,
        operation_id: str | None = None,
        done: bool = False,
        **_: Any,
    ) -> None:
        operation = operation_id or "?"
        listed = list(stages or ())
        with self._seen.lock:
            if listed:
                self._seen.groups.add(operation)
            for stage in listed:
                key = (operation, int(stage.stage_id))
                tasks, completed = int(stage.num_tasks), int(stage.num_completed_tasks)
                if (done or stage.done) and completed < tasks:
                    if completed == 0:  # skipped: its output came from an earlier stage
                        self._seen.stages.pop(key, None)
                        continue
                    completed = tasks  # finished after the last report
                self._seen.stages[key] = _Stage(tasks, completed, 0, int(stage.num_bytes_read))
            self._seen.inflight[operation] = 0 if done else int(inflight_tasks)
        self._notify()

    def _notify(self) -> None:
        if self.on_update is not None:
            self.on_update(self.counts())


class ProgressDisplay:
    """A live Rich display on `console` of the step, Spark's task counts and known rows."""

    def __init__(self, console: Console, step: str) -> None:
        self._progress = Progress(
            SpinnerColumn(table_column=_fixed()),
            # The step and the details give way (with an ellipsis) on a narrow terminal, the
            # task counts never.
            TextColumn(
                "{task.description}",
                table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(bar_width=20, table_column=_fixed()),
            MofNCompleteColumn(table_column=_fixed()),
            TextColumn(
                "tasks{task.fields[detail]}",
                table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
            ),
            TimeElapsedColumn(table_column=_fixed()),
            console=console,
            transient=True,
            expand=True,
        )
        self._task: TaskID = self._progress.add_task(step, total=None, detail="")
        self._counts = SparkCounts()
        self._rows: int | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.refresh()
        self._progress.stop()

    def step(self, text: str) -> None:
        """The step featurelake is in."""
        self._progress.update(self._task, description=text)

    def rows(self, count: int) -> None:
        """Rows done so far, when featurelake knows them."""
        with self._lock:
            self._rows = count
        self.spark(self._counts)

    def spark(self, counts: SparkCounts) -> None:
        """New counts from `SparkProgress`."""
        with self._lock:
            self._counts = counts
            rows = self._rows
        parts = []
        if counts.jobs:
            parts.append(f"{counts.jobs} job{'s' if counts.jobs != 1 else ''}")
        if counts.tasks_running:
            parts.append(f"{counts.tasks_running} running")
        if counts.bytes_read:
            parts.append(f"{_size(counts.bytes_read)} read")
        if rows is not None:
            parts.append(f"{rows:,} rows")
        self._progress.update(
            self._task,
            total=counts.tasks_total or None,
            completed=counts.tasks_done,
            detail=("  " + " · ".join(parts)) if parts else "",
        )


def _fixed() -> Column:
    """A column that keeps its width (never wrapped or shortened)."""
    return Column(no_wrap=True)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
