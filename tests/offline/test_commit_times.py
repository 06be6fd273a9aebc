"""A time read as of resolves to one Delta version in every engine, even when commits share a
tick of the storage's clock (object stores keep whole seconds)."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.engines.duckdb.reader import DuckDBFeatureReader
from featurelake.errors import MaterializationError
from featurelake.gold.commit_times import commit_times, version_at
from featurelake.plan.read_plan import ReadRequest
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore
from featurelake.times import utc_aware

SAME_SECOND = datetime(2026, 3, 1, 12, 0, 5)
GROUP = FeatureGroupSchema(
    name="visits",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    timestamp_key="event_timestamp",
    features=[FeatureSchema("count", "int")],
)


def commit_files(table: Path) -> list[Path]:
    return sorted((table / "_delta_log").glob("*.json"))


def stamp_commits(table: Path, when: datetime) -> None:
    """Date every commit of `table` at the same time, as a clock of whole seconds would."""
    seconds = utc_aware(when).timestamp()
    for path in commit_files(table):
        os.utime(path, (seconds, seconds))


def test_commits_in_one_tick_count_a_millisecond_apart(tmp_path: Path) -> None:
    table = tmp_path / "t"
    for value in range(3):
        write_deltalake(str(table), pa.table({"x": [value]}), mode="append")
    stamp_commits(table, SAME_SECOND)
    first = utc_aware(SAME_SECOND)
    assert [(c.version, c.timestamp) for c in commit_times(str(table))] == [
        (0, first),
        (1, first + timedelta(milliseconds=1)),
        (2, first + timedelta(milliseconds=2)),
    ]
    assert version_at(str(table), SAME_SECOND) == 0
    assert version_at(str(table), "2026-03-01 12:00:05.001") == 1
    assert version_at(str(table), "2026-03-01T12:00:05.002+00:00") == 2
    assert version_at(str(table), datetime(2030, 1, 1)) == 2
    with pytest.raises(MaterializationError, match="no version as of 2026-03-01 12:00:04"):
        version_at(str(table), SAME_SECOND - timedelta(seconds=1))
    with pytest.raises(MaterializationError, match="not a time"):
        version_at(str(table), "yesterday")
    with pytest.raises(MaterializationError, match="no Delta table"):
        version_at(str(tmp_path / "missing"), SAME_SECOND)


@pytest.mark.spark
def test_every_engine_reads_the_version_history_dates(
    spark: SparkSession, store_config: FeatureStoreConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(store_config, storage_path=str(tmp_path / "local"), storage=None)
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    store.register_features(GROUP)
    for count in range(3):
        rows = pd.DataFrame(
            {"customer_id": [1], "event_timestamp": [datetime(2026, 1, 1 + count)]}
        ).assign(count=pd.array([count], dtype="Int32"))
        store.write_features("visits", rows)
    stamp_commits(Path(str(store.location(GROUP).path)), SAME_SECOND)
    reader = DuckDBFeatureReader(Registry(config))

    commits = store.history("visits")
    assert [utc_aware(c.timestamp) for c in reversed(commits)] == [
        c.timestamp for c in commit_times(str(store.location(GROUP).path))
    ]
    for commit in commits:
        expected = store.get_features("visits.count", as_of_version=commit.version).toPandas()
        spark_rows = store.get_features("visits.count", as_of_timestamp=commit.timestamp)
        duck_rows = reader.read(
            ReadRequest.latest("visits.count", as_of_timestamp=commit.timestamp)
        )
        assert spark_rows.toPandas().to_dict("records") == expected.to_dict("records")
        assert duck_rows["count"].tolist() == expected["count"].tolist()
