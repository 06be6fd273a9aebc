"""The CLI's progress display fed by real Spark jobs: the status tracker of a classic session,
the progress handler of a Spark Connect one (this file runs in both modes)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession
from rich.console import Console

from featurelake.cli.output import Output
from featurelake.cli.progress import SparkCounts, SparkProgress

REPORT_INTERVAL = "spark.connect.progress.reportInterval"


@pytest.fixture(autouse=True)
def frequent_connect_reports(spark: SparkSession) -> Iterator[None]:
    """A Connect server reports progress every 2 s by default, longer than these jobs run."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        spark.conf.set(REPORT_INTERVAL, "50ms")
        yield
        spark.conf.unset(REPORT_INTERVAL)
    else:
        yield


def run_job(spark: SparkSession) -> None:
    """A job of two stages: 6 scan tasks, then a shuffle into 3 partitions."""
    frame = spark.range(0, 600_000, 1, 6).repartition(3, "id").selectExpr("sum(id) AS s")
    assert frame.collect()[0]["s"] == sum(range(600_000))


def test_spark_progress_sees_the_tasks_of_a_real_job(spark: SparkSession) -> None:
    updates: list[SparkCounts] = []
    with SparkProgress(spark, updates.append, poll_seconds=0.05) as progress:
        before = progress.counts()
        run_job(spark)
    counts = progress.counts()
    assert before == SparkCounts()  # jobs from before it started do not count
    assert counts.jobs >= 1
    assert counts.tasks_total >= 6 and counts.tasks_done == counts.tasks_total, counts
    assert updates and updates[-1].tasks_done == counts.tasks_done
    if progress.connect:
        assert counts.bytes_read >= 0
        assert not spark.client._progress_handlers  # type: ignore[attr-defined]

    with SparkProgress(spark, poll_seconds=0.05) as idle:  # nothing runs: nothing counted
        pass
    assert idle.counts() == SparkCounts()


def test_the_terminal_display_shows_task_counts_step_and_rows(spark: SparkSession) -> None:
    buffer = io.StringIO()
    err = Console(file=buffer, force_terminal=True, width=140, color_system=None)
    out = Output(err=err)
    with out.status("Writing accounts", spark=spark) as status:
        run_job(spark)
        status.step("Checking accounts")
        status.rows(1234)
    text = buffer.getvalue()
    assert "Checking accounts" in text
    done = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) tasks", text)]
    assert done and done[-1][0] == done[-1][1] >= 6, text[-500:]
    assert "1,234 rows" in text and "job" in text
