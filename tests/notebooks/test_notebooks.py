"""Each Databricks notebook run locally as a plain script, in its own folder and store.

The notebooks run one after another in one background process started by a module fixture
(run_notebooks.py: each as `__main__`, starting and stopping its own Spark session, one JVM start
for all); each test waits for its notebook and checks what it printed and left in the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
RUNNER = Path(__file__).with_name("run_notebooks.py")
TIMEOUT = 600


@dataclass
class NotebookRun:
    workdir: Path
    store: Path
    process: subprocess.Popen[bytes]

    def wait(self) -> tuple[int, str, str]:
        done = self.workdir / "exit_code.txt"
        deadline = time.monotonic() + TIMEOUT
        while not done.exists():
            code = self.process.poll()
            if code is not None and not done.exists():
                return code or 1, self.read("stdout.txt"), self.read("stderr.txt") + self.log()
            assert time.monotonic() < deadline, "the notebook did not finish in time"
            time.sleep(0.2)
        code = int(done.read_text())
        return code, self.read("stdout.txt"), self.read("stderr.txt") + self.log()

    def read(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text() if path.exists() else ""

    def log(self) -> str:
        """The runner's own output (Spark's JVM writes there)."""
        return (self.workdir.parent / "runner.log").read_text()

    def offline(self, spark: SparkSession) -> MaterializedFeatureStore:
        return MaterializedFeatureStore(
            StoreContext.of(FeatureStoreConfig(storage_path=str(self.store)), spark)
        )


def start(notebooks: list[Path], root: Path) -> dict[str, NotebookRun]:
    args: list[str] = []
    for notebook in notebooks:
        workdir = root / notebook.stem
        shutil.copytree(REPO / "conf", workdir / "conf")  # what a project checkout holds
        args += [str(notebook), str(workdir), str(root / f"{notebook.stem}_store")]
    env = {
        **os.environ,
        "FEATURELAKE_SPARK_MASTER": "local[1]",
        "FEATURELAKE_SPARK_SHUFFLE_PARTITIONS": "2",
        "FEATURELAKE_NOTEBOOK_CUSTOMERS": "100",
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # short-lived JVM
    }
    with (root / "runner.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(RUNNER), *args], cwd=root, env=env, stdout=log, stderr=log
        )
    return {
        n.stem: NotebookRun(root / n.stem, root / f"{n.stem}_store", process) for n in notebooks
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NotebookRun]]:
    started = start(NOTEBOOKS, tmp_path_factory.mktemp("notebooks"))
    yield started
    process = next(iter(started.values())).process
    if process.poll() is None:
        process.kill()
        process.wait()


def succeeded(run: NotebookRun) -> str:
    code, out, err = run.wait()
    assert code == 0, f"{out[-2000:]}\n{err[-4000:]}"
    return out


def test_notebooks_are_in_databricks_source_format() -> None:
    assert [n.stem for n in NOTEBOOKS] == [
        "01_quickstart",
        "02_training_set",
        "03_online_serving",
    ]
    for notebook in NOTEBOOKS:
        text = notebook.read_text()
        assert text.startswith("# Databricks notebook source\n"), notebook
        cells = text.split("\n# COMMAND ----------\n")
        assert len(cells) > 3, notebook
        for cell in cells:
            lines = [line for line in cell.splitlines() if line.strip()]
            magic = [line.startswith("# MAGIC") for line in lines[1 if cell is cells[0] else 0 :]]
            assert all(magic) or not any(magic), f"{notebook}: a cell mixes markdown and code"
        assert any(cell.lstrip().startswith("# MAGIC %md") for cell in cells)
        assert 'globals().get("spark") or get_spark(config)' in text
        assert "if OWN_SESSION:" in text  # a local run stops only the session it started


def test_quickstart(runs: dict[str, NotebookRun], spark: SparkSession) -> None:
    run = runs["01_quickstart"]
    out = succeeded(run)
    for line in (
        "registered customer_profile v1: created",
        "registered transaction_aggregates v1: created",
        "wrote customer_profile: 300 rows",
        "latest features for 3 customers",
        "customer_profile as of 2024-01-15",
        "rows at Delta v0: 0, now: 300",
    ):
        assert line in out, out
    store = run.offline(spark)
    assert store.read_table("customer_profile").count() == 300
    assert store.registry.group_state("transaction_aggregates").last_mode == "merge"


def test_training_set(runs: dict[str, NotebookRun], spark: SparkSession) -> None:
    run = runs["02_training_set"]
    out = succeeded(run)
    for line in (
        "customer_profile v1: 300 rows",
        "training set: 500 rows",
        "point-in-time check: 0 mismatching rows",
        "rebuilt after a new write: identical = True",
        "pandas training frame: 500 rows x 9 columns",
    ):
        assert line in out, out
    assert run.offline(spark).rebuild("churn_notebook").df.count() == 500


def test_online_serving(runs: dict[str, NotebookRun]) -> None:
    out = succeeded(runs["03_online_serving"])
    for line in (
        "synced customer_profile v1 (full) to memory://",
        ": 100 entities",
        "customer 1: {'segment': ",
        "single-customer lookups",
        "online equals offline for 20 customers: True",
        "incremental sync (incremental): 5 rows",
        "segments now: ['platinum', 'platinum', 'platinum', 'platinum', 'platinum']",
    ):
        assert line in out, out
