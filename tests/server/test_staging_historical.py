"""HTTP writes staged, compacted into Gold by the job's function, then read back historically."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from featurelake.server.staging import StagingTable, compact_staging, compacted_version

from .conftest import LiveServer

pytestmark = [pytest.mark.redis, pytest.mark.spark]

JOBS = Path(__file__).resolve().parents[2] / "jobs"
VISITS = {
    "name": "visits",
    "entity_keys": ["user_id"],
    "entity_key_types": {"user_id": "bigint"},
    "features": [
        {"name": "clicks", "type": "int"},
        {"name": "value", "type": "double"},
        {"name": "channel", "type": "string"},
    ],
}
START = datetime(2024, 5, 1)


def _records() -> list[dict[str, Any]]:
    records = []
    for user in (1, 2, 3):
        for hour in range(0, 72, 6):  # three days, every 6 hours
            records.append(
                {
                    "user_id": user,
                    "event_timestamp": (START + timedelta(hours=hour)).isoformat(),
                    "clicks": (user * 7 + hour) % 11,
                    "value": None if hour == 30 else round(user * 1.5 + hour / 4, 2),
                    "channel": ["web", "app", "mail"][(user + hour) % 3],
                }
            )
    return records


def _expected(records: list[dict[str, Any]], start: datetime, end: datetime) -> dict[int, Any]:
    out: dict[int, Any] = {}
    by_user: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if start <= datetime.fromisoformat(r["event_timestamp"]) < end:
            by_user[r["user_id"]].append(r)
    for user, rows in by_user.items():
        rows.sort(key=lambda r: r["event_timestamp"])
        values = [r["value"] for r in rows if r["value"] is not None]
        out[user] = {
            "clicks__latest": rows[-1]["clicks"],
            "clicks__sum": sum(r["clicks"] for r in rows),
            "clicks__count": len(rows),
            "value__avg": sum(values) / len(values),
            "value__min": min(values),
            "value__max": max(values),
            "value__count": len(values),
            "channel__latest": rows[-1]["channel"],
        }
    return out


def load_job(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_staged_writes_compact_into_gold_and_read_historically(
    live_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = live_server.store
    staging = StagingTable.for_store(store.config)
    records = _records()
    # A replay of one record with a new value: the later one wins at compaction.
    replay = {**records[0], "clicks": 99}
    with live_server.client(live_server.admin) as admin:
        assert admin.post("/v1/features/register", json=VISITS).status_code == 200
        no_stats = admin.get("/v1/features/visits/stats")
        first = admin.post("/v1/features/write-batch", json={"group": "visits", "records": records})
        second = admin.post("/v1/features/write", json={"group": "visits", "record": replay})
        pending = admin.get("/v1/features/visits").json()["staged_pending"]
    assert no_stats.status_code == 404 and no_stats.json()["error"]["code"] == "no_statistics"
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert pending == len(records) + 1

    config_file = tmp_path / "featurelake.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "storage_path": store.config.storage_path,
                "metadata_cache_ttl_seconds": 0,
                "spark_shuffle_partitions": 2,
            }
        )
    )
    assert load_job("compact_staging").main(["--config", str(config_file)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    visits = [g for g in result["groups"] if g["group"] == "visits"]
    assert len(visits) == 1 and visits[0]["records"] == len(records) + 1
    assert compacted_version(store.registry) == staging.version()
    assert compact_staging(store).from_version is None  # nothing new: up to date

    gold = store.offline.read_table("visits").toPandas()
    assert len(gold) == len(records)  # the replay merged onto its key + time
    replayed = gold[(gold.user_id == 1) & (gold.event_timestamp == START)]
    assert replayed.clicks.tolist() == [99]
    records[0] = replay

    end = START + timedelta(days=2)
    body = {
        "features": ["visits.clicks", "visits.value", "visits.channel"],
        "entities": [1, 2, 3, 4],
        "start": START.isoformat(),
        "end": end.isoformat(),
        "aggregations": ["latest", "sum", "avg", "min", "max", "count"],
    }
    numeric_only = {
        "features": ["visits.clicks", "visits.value"],
        "aggregations": ["latest", "sum", "avg", "min", "max", "count"],
    }
    with live_server.client(live_server.admin) as admin:
        whole = admin.post("/v1/features/historical", json={**body, **numeric_only})
        channel = admin.post(
            "/v1/features/historical",
            json={**body, "features": ["visits.channel"], "aggregations": ["latest", "count"]},
        )
        windowed = admin.post(
            "/v1/features/historical",
            json={**body, "features": ["visits.clicks"], "aggregations": ["sum"], "window": "1d"},
        )
        avg_of_text = admin.post(
            "/v1/features/historical",
            json={**body, "features": ["visits.channel"], "aggregations": ["avg"]},
        )
        empty_range = admin.post(
            "/v1/features/historical", json={**body, "end": body["start"], **numeric_only}
        )
        two_groups = admin.post(
            "/v1/features/historical", json={**body, "features": ["visits.clicks", "profile.age"]}
        )
        all_time = admin.post(
            "/v1/features/historical",
            json={
                **body,
                "start": "0001-01-01T00:00:00",
                "end": "9999-12-31T23:59:59+00:00",
                "aggregations": ["count"],
            },
        )
        too_many_windows = admin.post(
            "/v1/features/historical", json={**body, **numeric_only, "window": "1s"}
        )
        on_spark = {
            name: admin.post("/v1/features/historical", json={**request, "engine": "spark"}).json()
            for name, request in (
                ("whole", {**body, **numeric_only}),
                (
                    "windowed",
                    {
                        **body,
                        "features": ["visits.clicks"],
                        "aggregations": ["sum"],
                        "window": "1d",
                    },
                ),
            )
        }
        stats = admin.get("/v1/features/visits/stats")
        described = admin.get("/v1/features/visits").json()
    with live_server.client(live_server.reader) as reader:
        forbidden = reader.post("/v1/features/historical", json={**body, **numeric_only})

    assert whole.status_code == 200, whole.text
    expected = _expected(records, START, end)
    rows = whole.json()["rows"]
    assert [r["entity"] for r in rows] == [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
    for row in rows:
        want = expected[row["entity"]["user_id"]]
        got = row["values"]
        assert row["window_start"] == START.isoformat() and row["window_end"] == end.isoformat()
        for name in (
            "clicks__latest",
            "clicks__sum",
            "clicks__count",
            "value__min",
            "value__max",
            "value__count",
        ):
            assert got[name] == want[name], name
        assert got["value__avg"] == pytest.approx(want["value__avg"])
    # A small read runs on DuckDB (no Spark job); Spark gives the same rows.
    assert whole.json()["metadata"]["engine"] == "duckdb"
    assert on_spark["whole"]["metadata"]["engine"] == "spark"
    for name, response in (("whole", whole), ("windowed", windowed)):
        assert response.json()["rows"] == on_spark[name]["rows"], name
    assert [r["values"]["channel__latest"] for r in channel.json()["rows"]] == [
        expected[u]["channel__latest"] for u in (1, 2, 3)
    ]

    days = windowed.json()["rows"]
    assert len(days) == 6  # 3 users x 2 days
    for row in days:
        day_start = datetime.fromisoformat(row["window_start"])
        want = _expected(records, day_start, day_start + timedelta(days=1))
        assert row["values"]["clicks__sum"] == want[row["entity"]["user_id"]]["clicks__sum"]
        assert datetime.fromisoformat(row["window_end"]) - day_start == timedelta(days=1)

    assert all_time.status_code == 200, all_time.text
    counts = {r["entity"]["user_id"]: r["values"]["clicks__count"] for r in all_time.json()["rows"]}
    assert counts == {1: 12, 2: 12, 3: 12}
    assert too_many_windows.status_code == 422 and "windows" in too_many_windows.text
    assert avg_of_text.status_code == 422
    assert avg_of_text.json()["error"]["code"] == "schema_validation_failed"
    assert empty_range.status_code == 422
    assert empty_range.json()["error"]["code"] == "invalid_time_range"
    assert two_groups.status_code == 422 and "one group" in two_groups.json()["error"]["message"]
    # The reader has no right on `visits`: it answers like an unknown group.
    assert forbidden.status_code == 404 and forbidden.json()["error"]["code"] == "group_not_found"

    assert stats.status_code == 200, stats.text
    statistics = stats.json()
    assert statistics["row_count"] == len(records)
    assert statistics["features"]["clicks"]["count"] == len(records)
    assert described["staged_pending"] == 0
    assert described["statistics"]["row_count"] == len(records)
    assert described["freshness"]["last_event"] is not None
    assert described["state"]["row_count"] == len(records) and described["state"]["writes"] >= 1
    staged = staging.changes(1, staging.version() or 0)
    assert json.loads(staged[-1]["payload"])["clicks"] in (99, records[-1]["clicks"])
