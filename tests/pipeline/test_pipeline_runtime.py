"""What the CLI, jobs and nodes share: exit codes, settings, time parsing, sources, outputs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from pyspark.sql import SparkSession

from featurelake.errors import (
    ConcurrentWriteError,
    ConfigurationError,
    FeatureGroupNotFoundError,
    MaterializationError,
    PointInTimeError,
    SchemaValidationError,
)
from featurelake.pipeline.runtime import exit_code, load_settings, one_line, parse_spark_conf
from featurelake.pipeline.sources import (
    detect_format,
    parse_time,
    parse_time_range,
    read_source,
    write_output,
)
from featurelake.pipeline.tasks import arrow_safe, feature_ref_list


def caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("bad key"), 2),
        (SchemaValidationError("bad rows"), 2),
        (FeatureGroupNotFoundError("no group"), 2),
        (PointInTimeError("no time column"), 2),
        (MaterializationError("unknown mode"), 2),  # featurelake's own check
        (caused(MaterializationError("write failed"), OSError("disk full")), 1),
        (ConcurrentWriteError("conflicts"), 1),  # transient: retries ran out
        (RuntimeError("boom"), 1),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def test_one_line() -> None:
    error = SchemaValidationError("3 rows\nbreak a rule.", fix="correct them.")
    assert one_line(error) == "SchemaValidationError: 3 rows break a rule. Fix: correct them."
    assert one_line(RuntimeError("first\n  at java.lang...\n")) == "RuntimeError: first"


def test_spark_conf_pairs() -> None:
    assert parse_spark_conf(["a.b=1", " c = x=y "]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ConfigurationError, match="key=value"):
        parse_spark_conf(["novalue"])


def test_settings_resolve_a_relative_store_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf" / "featurelake.yaml"
    conf.parent.mkdir()
    conf.write_text(yaml.safe_dump({"storage_path": "./store", "spark_conf": {"a": "1"}}))
    monkeypatch.chdir(tmp_path)
    config = load_settings(None, {"b": "2"})  # the default path, under the cwd
    assert config.storage_path == str(tmp_path / "store")
    assert dict(config.spark_conf) == {"a": "1", "b": "2"}
    monkeypatch.setenv("FEATURELAKE_STORAGE_PATH", "s3://bucket/features")
    assert load_settings(conf).storage_path == "s3://bucket/features"
    monkeypatch.setenv("FEATURELAKE_CONFIG", str(tmp_path / "other.yaml"))
    with pytest.raises(ConfigurationError, match=r"other\.yaml does not exist"):
        load_settings()


def test_times() -> None:
    assert parse_time("2024-01-31") == datetime(2024, 1, 31)
    assert parse_time("2024-01-31T12:30") == datetime(2024, 1, 31, 12, 30)
    assert parse_time("2024-01-31T12:30:00+02:00") == datetime(2024, 1, 31, 10, 30)
    assert parse_time("2024-01-31T12:30:00Z") == datetime(2024, 1, 31, 12, 30)
    with pytest.raises(ConfigurationError, match="ISO 8601"):
        parse_time("last tuesday")
    assert parse_time_range(None, None) is None
    with pytest.raises(ConfigurationError, match="both a start and an end"):
        parse_time_range("2024-01-01", None)
    with pytest.raises(ConfigurationError, match="is empty"):
        parse_time_range("2024-02-01", "2024-01-01")


def test_refs_from_lists_and_commas() -> None:
    assert feature_ref_list(["a.x, b.*", "c@2.y"]) == ["a.x", "b.*", "c@2.y"]


def test_source_formats(tmp_path: Path, spark: SparkSession) -> None:
    delta, parquet = tmp_path / "d", tmp_path / "p"
    spark.range(3).write.format("delta").save(str(delta))
    spark.range(4).write.parquet(str(parquet))
    assert detect_format("main.raw.orders") == "table"
    assert detect_format("orders") == "table"
    assert detect_format(str(delta)) == "delta"
    assert detect_format(str(parquet)) == "parquet"
    assert detect_format("data/orders.csv") == "csv"
    assert detect_format("s3://bucket/orders") == "delta|parquet"
    assert read_source(spark, str(delta)).count() == 3
    assert read_source(spark, str(parquet)).count() == 4

    csv = tmp_path / "e.csv"
    csv.write_text("customer_id,event_timestamp\n1,2024-01-02 10:00:00\n")
    frame = read_source(spark, str(csv))
    assert dict(frame.dtypes) == {"customer_id": "int", "event_timestamp": "timestamp"}

    with pytest.raises(ConfigurationError, match="does not exist"):
        read_source(spark, str(tmp_path / "nothing"))
    with pytest.raises(ConfigurationError, match="Cannot read the source 'no_such_table'"):
        read_source(spark, "no_such_table")
    with pytest.raises(ConfigurationError, match="format 'xml'"):
        read_source(spark, str(delta), "xml")


def test_outputs_are_not_overwritten_by_accident(tmp_path: Path, spark: SparkSession) -> None:
    out = str(tmp_path / "out")
    write_output(spark.range(2), out)
    with pytest.raises(ConfigurationError, match="--overwrite"):
        write_output(spark.range(5), out)
    write_output(spark.range(5), out, overwrite=True)
    assert spark.read.parquet(out).count() == 5


def test_arrow_safe_pandas_strings(spark: SparkSession) -> None:
    chunked = pa.chunked_array([["a", None], ["b"]])
    frame = pd.DataFrame({"s": pd.Series(pd.arrays.ArrowStringArray(chunked)), "n": [1, 2, 3]})
    fixed = arrow_safe(frame)
    rows = spark.createDataFrame(fixed, "s string, n bigint").collect()
    assert [(r.s, r.n) for r in rows] == [("a", 1), (None, 2), ("b", 3)]
    assert arrow_safe(spark.range(1)) is not None
