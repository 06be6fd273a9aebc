"""Each Databricks notebook run locally as a plain script, in its own folder and store.

The runs start together in one module fixture (each starts its own Spark); each test waits for
its notebook and checks what it printed and what it left in the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.offline.materialized import MaterializedFeatureStore

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
TIMEOUT = 600


@dataclass
class NotebookRun:
    workdir: Path
    store: Path
    process: subprocess.Popen[bytes]

    def wait(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=TIMEOUT)
        out = (self.workdir / "stdout.txt").read_text()
        err = (self.workdir / "stderr.txt").read_text()
        return code, out, err

    def offline(self, spark: SparkSession) -> MaterializedFeatureStore:
        return MaterializedFeatureStore(FeatureStoreConfig(storage_path=str(self.store)), spark)


def start(notebook: Path, root: Path) -> NotebookRun:
    workdir = root / notebook.stem
    shutil.copytree(REPO / "conf", workdir / "conf")  # what a project checkout holds
    store = root / f"{notebook.stem}_store"
    env = {
        **os.environ,
        "FEATURELAKE_STORAGE_PATH": str(store),
        "FEATURELAKE_SPARK_MASTER": "local[1]",
        "FEATURELAKE_SPARK_SHUFFLE_PARTITIONS": "2",
        "FEATURELAKE_NOTEBOOK_CUSTOMERS": "100",
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # short-lived JVM
    }
    with (workdir / "stdout.txt").open("wb") as out, (workdir / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(notebook)], cwd=workdir, env=env, stdout=out, stderr=err
        )
    return NotebookRun(workdir, store, process)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NotebookRun]]:
    root = tmp_path_factory.mktemp("notebooks")
    started = {notebook.stem: start(notebook, root) for notebook in NOTEBOOKS}
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


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
