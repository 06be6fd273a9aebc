"""Freshness: age of the newest event and of the last materialization, CLI exit code, report."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from featurelake.cli import app
from featurelake.quality.freshness import group_freshness
from featurelake.quality.report import render_html, report_data
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = pytest.mark.spark


def test_freshness_of_events_and_materializations(
    spark: SparkSession,
    kit: SimpleNamespace,
    make_store: Callable[[str], MaterializedFeatureStore],
    tmp_path: Path,
) -> None:
    store = make_store("store")
    fresh = kit.group(None, name="fresh_group", freshness="1h")
    store.register_features(fresh)
    store.register_features(kit.group(None, name="never_written", freshness="1h"))
    store.register_features(kit.group(None, name="no_limit"))
    now = datetime.now(UTC).replace(tzinfo=None)
    newest = now - timedelta(minutes=10)
    rows = [(1, newest - timedelta(hours=5), 1.0, "FR"), (2, newest, 2.0, "DE")]
    store.write_features(
        "fresh_group",
        spark.createDataFrame(
            rows, "customer_id BIGINT, event_timestamp TIMESTAMP, spend DOUBLE, country STRING"
        ),
    )

    checked = datetime.now(UTC).replace(tzinfo=None)
    state = group_freshness(store.registry, fresh, now=checked)
    assert state.status == "fresh" and state.stale_reasons == []
    assert abs(state.newest_event - newest) < timedelta(milliseconds=1)
    assert state.materialization_age is not None
    assert timedelta(0) <= state.materialization_age < timedelta(minutes=10)

    later = group_freshness(store.registry, fresh, now=checked + timedelta(hours=2))
    assert later.stale and later.stale_reasons == [
        "newest event older than the limit",
        "last materialization older than the limit",
    ]
    never = group_freshness(store.registry, store.resolve_group("never_written"))
    assert never.status == "stale" and "never materialized" in never.stale_reasons
    assert group_freshness(store.registry, store.resolve_group("no_limit")).status == "no data"

    config = tmp_path / "featurelake.yaml"
    config.write_text(yaml.safe_dump({"storage_path": store.config.storage_path}))
    runner = CliRunner()
    everything = runner.invoke(app, ["--config", str(config), "freshness", "--json"])
    assert everything.exit_code == 3, everything.output
    report = json.loads(everything.stdout)
    assert report["stale"] == ["never_written"]
    assert {g["group"]: g["status"] for g in report["groups"]} == {
        "fresh_group": "fresh",
        "never_written": "stale",
        "no_limit": "no data",
    }
    one = runner.invoke(app, ["--config", str(config), "freshness", "fresh_group"])
    assert one.exit_code == 0, one.output
    assert "fresh_group v1" in one.stdout and "fresh" in one.stdout


def test_quality_report_shows_materialization_age(kit: SimpleNamespace) -> None:
    schema = kit.group(None, freshness="1h")
    now = datetime(2024, 3, 1, 12)
    data = report_data(schema, {}, [], [], now=now, last_materialized=now - timedelta(hours=2))
    assert data["freshness"]["materialization_age_seconds"] == 7200
    assert data["freshness"]["materialization_fresh"] is False
    page = render_html(schema, {}, [], data)
    assert "Last materialization" in page and "2.0h ago" in page
