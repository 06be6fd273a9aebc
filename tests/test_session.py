from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.session import delta_version, find_delta_jars, get_spark


def test_get_spark_returns_the_active_session(spark: SparkSession) -> None:
    assert get_spark() is spark


def test_session_is_delta_enabled(spark: SparkSession) -> None:
    assert "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions", "")
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_local_jars_match_the_wheel() -> None:
    jars = find_delta_jars()
    assert jars is not None, "run `make setup` to fetch the Delta jars"
    assert all(delta_version() in jar.name for jar in jars)


def test_missing_jars_folder_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEATURELAKE_JARS_DIR", str(tmp_path / "nothing"))
    found = find_delta_jars(str(tmp_path / "empty"))
    # Only the source checkout's own .jars may satisfy the lookup, never the empty folders.
    assert found is None or all(tmp_path not in jar.parents for jar in found)


def test_delta_write_read_and_time_travel(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "table")
    spark.range(10).write.format("delta").save(path)
    spark.range(10, 15).write.format("delta").mode("append").save(path)

    assert spark.read.format("delta").load(path).count() == 15
    old = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert sorted(r.id for r in old.collect()) == list(range(10))
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version").collect()
    assert sorted(r.version for r in history) == [0, 1]
