"""The CLI commands show Spark's progress on a terminal only, and never with --json."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from pyspark.sql import SparkSession
from typer.testing import CliRunner, Result

from featurelake.cli import app

GROUP = {
    "name": "visits",
    "entity_keys": [{"name": "user_id", "type": "bigint"}],
    "timestamp_key": "event_timestamp",
    "features": [{"name": "pages", "type": "bigint"}],
}


@pytest.fixture
def project(tmp_path: Path, spark: SparkSession) -> Path:
    features = tmp_path / "features"
    features.mkdir()
    (features / "visits.yaml").write_text(yaml.safe_dump(GROUP))
    config = tmp_path / "featurelake.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage_path": str(tmp_path / "store"),
                "spark_shuffle_partitions": 2,
                "metadata_cache_ttl_seconds": 0,
                "retry_backoff_ms": 20,
            }
        )
    )
    pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "event_timestamp": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03"], utc=True),
            "pages": [3, 5, 8],
        }
    ).to_parquet(tmp_path / "visits.parquet")
    applied = CliRunner().invoke(
        app, ["--config", str(config), "apply", "--features", str(features)]
    )
    assert applied.exit_code == 0, applied.output
    return tmp_path


def materialize(project: Path, *extra: str, terminal: bool) -> Result:
    env = {"COLUMNS": "160", "FORCE_COLOR": "1" if terminal else None}
    return CliRunner(env=env).invoke(
        app,
        [
            "--config",
            str(project / "featurelake.yaml"),
            *extra,
            "materialize",
            "visits",
            "--source",
            str(project / "visits.parquet"),
        ],
    )


def test_progress_shows_on_a_terminal_and_never_otherwise(project: Path) -> None:
    plain = materialize(project, terminal=False)
    assert plain.exit_code == 0, plain.output
    assert " tasks" not in plain.stderr and "\x1b[" not in plain.stderr
    assert "Writing visits (append) from" in plain.stderr  # the one status line

    as_json = materialize(project, "--json", terminal=True)
    assert as_json.exit_code == 0, as_json.output
    assert " tasks" not in as_json.stderr, as_json.stderr
    assert as_json.stdout.lstrip().startswith("{")

    live = materialize(project, terminal=True)  # the same command on a terminal: it shows
    assert live.exit_code == 0, live.output
    assert " tasks" in live.stderr and "Writing visits (append)" in live.stderr
