"""The standalone cluster of the cluster mode: executors are processes of their own, and every
process a cluster starts is stopped by its id (these tests run in cluster mode only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.errors import ConfigurationError
from featurelake.standalone_cluster import LocalStandaloneCluster


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_session_runs_on_executors_of_their_own(
    spark: SparkSession, spark_cluster: LocalStandaloneCluster | None
) -> None:
    assert spark_cluster is not None
    context = spark.sparkContext
    assert context.master == spark_cluster.url
    state = spark_cluster.state()
    assert state is not None and state["aliveworkers"] == 2
    (app,) = [a for a in state["activeapps"] if a["id"] == context.applicationId]
    assert app["cores"] == 2
    # Python runs in workers the executors started, not in this process.
    pids = set(context.parallelize(range(8), 8).map(lambda _: os.getpid()).collect())
    assert pids and os.getpid() not in pids
    deadline = time.monotonic() + 120  # executors register with the driver as they start
    while context._jsc.sc().getExecutorIds().size() < 2 and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.5)
    assert context._jsc.sc().getExecutorIds().size() == 2  # type: ignore[union-attr]


def test_a_cluster_stops_every_process_it_started(
    spark_cluster: LocalStandaloneCluster | None, tmp_path: Path
) -> None:
    assert spark_cluster is not None  # the cluster mode's suite
    with LocalStandaloneCluster.start(log_dir=tmp_path, workers=1, worker_memory="256m") as one:
        pids = one.pids
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        assert one.state() is not None
    assert not any(alive(pid) for pid in pids)


def test_a_cluster_that_cannot_start_is_a_typed_error_and_leaves_nothing_running(
    spark_cluster: LocalStandaloneCluster | None, tmp_path: Path
) -> None:
    assert spark_cluster is not None
    with pytest.raises(ConfigurationError) as raised:
        LocalStandaloneCluster.start(log_dir=tmp_path, workers=1, worker_memory="lots")
    assert "worker(s) not up" in raised.value.message and "worker-0" in raised.value.message
    assert str(tmp_path) in (raised.value.fix or "")
    started = [int(line.split()[0]) for line in (tmp_path / "pids").read_text().splitlines()]
    assert started and not any(alive(pid) for pid in started)
