"""Compaction with a watermark per group: a record that can no longer be merged goes to the
dead-letter table with its reason, and the other groups are merged once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from featurelake.cli import app
from featurelake.server.staging import StagingTable, compact_staging, compacted_version

from .conftest import LiveServer

pytestmark = [pytest.mark.redis, pytest.mark.spark]

TIGHTENED = {
    "name": "dl_sensor",
    "entity_keys": ["sensor_id"],
    "entity_key_types": {"sensor_id": "bigint"},
    "features": [{"name": "reading", "type": "int", "min": 0, "max": 100}],
}
STEADY = {
    "name": "dl_meter",
    "entity_keys": ["meter_id"],
    "entity_key_types": {"meter_id": "bigint"},
    "features": [{"name": "kwh", "type": "double"}],
}


def test_a_record_broken_by_a_schema_change_is_dead_lettered_and_the_rest_move_on(
    live_server: LiveServer, tmp_path: Path
) -> None:
    store = live_server.store
    staging = StagingTable.for_store(store.config)
    sensor = [
        {"sensor_id": 1, "event_timestamp": "2024-04-01T00:00:00", "reading": 90},
        {"sensor_id": 2, "event_timestamp": "2024-04-01T00:00:00", "reading": 10},
    ]
    meter = [{"meter_id": 7, "event_timestamp": "2024-04-01T00:00:00", "kwh": 1.5}]
    with live_server.client(live_server.admin) as admin:
        for group in (TIGHTENED, STEADY):
            assert admin.post("/v1/features/register", json=group).status_code == 200
        for name, records in (("dl_sensor", sensor), ("dl_meter", meter)):
            written = admin.post(
                "/v1/features/write-batch", json={"group": name, "records": records}
            )
            assert written.status_code == 200, written.text
        # A compatible change: a tighter max. Reading 90 was valid when staged.
        tighter = {**TIGHTENED, "features": [{**TIGHTENED["features"][0], "max": 50}]}
        updated = admin.post("/v1/features/register", json=tighter)
        assert updated.json()["action"] == "updated"

    first = compact_staging(store)  # does not raise
    by_group = {g.group: g for g in first.groups}
    assert by_group["dl_sensor"].dead_lettered == 1 and by_group["dl_sensor"].rows_merged == 1
    assert by_group["dl_meter"].rows_merged == 1
    meter_version = store.offline.history("dl_meter")[0].version
    meter_rows = store.offline.read_table("dl_meter").toPandas()
    assert compacted_version(store.registry) == staging.version()

    with live_server.client(live_server.admin) as admin:  # something new to compact
        assert (
            admin.post(
                "/v1/features/write",
                json={
                    "group": "dl_sensor",
                    "record": {"sensor_id": 3, "event_timestamp": "2024-04-02", "reading": 5},
                },
            ).status_code
            == 200
        )
    second = compact_staging(store)
    assert [g.group for g in second.groups] == ["dl_sensor"]  # dl_meter is not merged again
    assert store.offline.history("dl_meter")[0].version == meter_version
    again = store.offline.read_table("dl_meter").toPandas()
    assert again["_ingested_at"].tolist() == meter_rows["_ingested_at"].tolist()
    gold = store.offline.read_table("dl_sensor").toPandas()
    assert sorted(gold.sensor_id.tolist()) == [2, 3]

    with live_server.client(live_server.admin) as admin:
        described = admin.get("/v1/features/dl_sensor").json()
    assert described["dead_letters"] == 1 and described["staged_pending"] == 0

    config = tmp_path / "featurelake.yaml"
    config.write_text(
        yaml.safe_dump({"storage_path": store.config.storage_path, "metadata_cache_ttl_seconds": 0})
    )
    shown = CliRunner().invoke(
        app, ["--config", str(config), "dead-letters", "dl_sensor", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    letters = json.loads(shown.stdout)
    assert letters["total"] == 1
    (letter,) = letters["dead_letters"]
    assert json.loads(letter["payload"])["reading"] == 90
    assert "current schema" in letter["reason"] and "above its max 50" in letter["reason"]
