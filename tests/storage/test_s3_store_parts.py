"""The parts of a store that the other s3-mode suites leave out, on an s3:// store (SeaweedFS on
loopback, s3 mode only): a backfill and time travel to the version before it, the quality
records and the quarantine table, the tiles of an aggregation group (built, then refreshed after
appends and read by the next materialization), and the server's audit table."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake import FeatureStore, storage
from featurelake.config import FeatureStoreConfig
from featurelake.quality import check_history, drift_history, quarantined_rows, statistics_history
from featurelake.registry import Registry
from featurelake.s3_server import LocalS3Server
from featurelake.schema import FeatureGroupSchema
from featurelake.server import ServerSettings, create_app
from featurelake.server.audit import AuditLog
from featurelake.server.auth import ApiKeyStore

T0 = datetime(2024, 5, 1)


def at(days: int, hours: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


@pytest.fixture(scope="module")
def store(spark: SparkSession, s3_server: LocalS3Server) -> Iterator[FeatureStore]:
    """The module's store on S3. Writes are not profiled (each profile costs Spark jobs); the
    quality test opens the same store with `quality_on_write`."""
    config = FeatureStoreConfig(
        storage_path=f"s3://featurelake/{uuid.uuid4().hex[:12]}/store",
        storage=s3_server.settings(),
        spark_shuffle_partitions=2,
        max_retries=8,
        retry_backoff_ms=20,
        metadata_cache_ttl_seconds=0,
        quality_on_write=False,
    )
    with FeatureStore(config, spark) as opened:
        yield opened


def reopened(store: FeatureStore) -> FeatureStore:
    """A second store object on the same path: what it reads comes from S3, not from memory."""
    return FeatureStore(store.config, store.spark)


def sorted_rows(frame: Any, columns: list[str]) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in frame.select(*columns).collect())


# -- a backfill, time travel and the quality tables -------------------------------------------

ACCOUNTS = FeatureGroupSchema.from_dict(
    {
        "name": "accounts",
        "entity_keys": ["account_id"],
        "entity_key_types": {"account_id": "bigint"},
        "features": [
            {"name": "balance", "type": "double"},
            {"name": "tier", "type": "string"},
        ],
        "checks": {
            "on_write": "quarantine",
            "rules": [
                {"type": "range", "feature": "balance", "min": 0, "max": 1000},
                {"type": "allowed_values", "feature": "tier", "values": ["a", "b", "c"]},
            ],
        },
    }
)
ACCOUNT_COLUMNS = ["account_id", "event_timestamp", "balance", "tier"]
TIERS = {1: "a", 2: "b", 3: "c"}


def accounts(rows: list[tuple[int, datetime, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=ACCOUNT_COLUMNS)


def tier_psi(before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]) -> float:
    """PSI of the tiers' shares: sum over tiers of (after - before) * ln(after / before)."""
    old, new = Counter(r[3] for r in before), Counter(r[3] for r in after)
    return math.fsum(
        (new[t] / len(after) - old[t] / len(before))
        * math.log((new[t] / len(after)) / (old[t] / len(before)))
        for t in old
    )


def test_backfill_time_travel_and_quality_tables(store: FeatureStore) -> None:
    # the same store, its writes checked and profiled (statistics, drift) as by default
    store = FeatureStore(store.config.replace(quality_on_write=True), store.spark)
    store.register_features(ACCOUNTS)
    first = [(k, at(d), float(10 * k + d), TIERS[k]) for k in (1, 2, 3) for d in range(4)]
    written = store.write_features("accounts", accounts([*first, (4, at(0), -5.0, "a")]))
    assert written.rows_written == 12  # the row below the range is set aside
    appended = [(1, at(4), 15.0, "a")]  # its statistics fold into the first write's
    before = store.write_features("accounts", accounts(appended)).delta_version
    assert store.history("accounts")[0].version == before

    backfill = [(1, at(1), 100.0, "c"), (2, at(2), 200.0, "c")]
    result = store.backfill("accounts", accounts(backfill), start=at(1), end=at(3))
    assert result.mode == "backfill" and result.rows_written == 2
    kept = [row for row in first if row[1] in (at(0), at(3))]
    after = sorted(kept + appended + backfill)
    assert sorted_rows(store.read_table("accounts"), ACCOUNT_COLUMNS) == after
    travelled = store.read_table("accounts", as_of_version=before)
    assert sorted_rows(travelled, ACCOUNT_COLUMNS) == sorted(first + appended)
    assert store.history("accounts")[0].version == result.delta_version

    # the quarantine side table, under the store on S3
    side = quarantined_rows(store.registry, "accounts", store.spark)
    assert [(r["account_id"], r["balance"], list(r["_failed_rules"])) for r in side.collect()] == [
        (4, -5.0, ["range_balance"])
    ]
    assert storage.is_delta_table(f"{store.config.storage_path}/_quarantine/accounts")

    # statistics, checks and drift on demand, recorded beside those of each write
    stats = store.statistics("accounts")
    assert stats.delta_version == result.delta_version and stats.row_count == len(after)
    balance = stats.features["balance"]
    assert (balance.min, balance.max) == (min(r[2] for r in after), 200.0)
    assert balance.mean == pytest.approx(math.fsum(r[2] for r in after) / len(after))
    assert store.check("accounts").passed
    drift = store.drift("accounts", reference=before)
    assert (drift.reference_delta_version, drift.current_delta_version) == (
        before,
        result.delta_version,
    )
    assert drift.features["tier"].psi == pytest.approx(tier_psi(first + appended, after))

    # read back by another store object on the same path
    registry = reopened(store).registry
    history = statistics_history(registry, "accounts", 1)
    assert {v: s.row_count for v, s in history.items() if v is not None} == {
        written.delta_version: 12,
        before: 13,  # from the append's rows (the change data feed on S3) and the first's
        result.delta_version: len(after),
    }
    folded, balances = history[before].features["balance"], [r[2] for r in first + appended]
    assert (folded.min, folded.max) == (min(balances), max(balances))
    assert folded.mean == pytest.approx(math.fsum(balances) / 13)
    checks = check_history(registry, "accounts", 1)
    assert [(c["passed"], c["quarantined_rows"]) for c in checks] == [
        (False, 1),  # the first write, one row set aside
        (True, 0),  # the append
        (True, 0),  # the backfill
        (True, 0),  # on demand
    ]
    assert checks[-1]["delta_version"] == result.delta_version
    drifts = drift_history(registry, "accounts", 1)
    versions = [(d.reference_delta_version, d.current_delta_version) for d in drifts]
    assert versions == [
        (written.delta_version, before),  # on the append, from the recorded summaries
        (before, result.delta_version),  # on the backfill
        (before, result.delta_version),  # on demand
    ]
    assert drifts[-1].features["tier"].psi == pytest.approx(tier_psi(first + appended, after))


# -- an aggregation group: tiles built, refreshed after appends, read ----------------------------

PURCHASES = FeatureGroupSchema(
    "purchases",
    ["order_id"],
    [{"name": "customer_id", "type": "bigint"}, {"name": "amount", "type": "double"}],
)
SPEND = FeatureGroupSchema.from_dict(
    {
        "name": "customer_spend",
        "entity_keys": ["customer_id"],
        "event_source": "purchases",
        "aggregations": [
            {"column": "amount", "function": "sum", "windows": ["1d", "3d"]},
            {"column": "amount", "function": "count", "windows": ["3d"]},
        ],
    }
)
SPEND_COLUMNS = ["customer_id", "event_timestamp", "amount_sum_1d", "amount_sum_3d"]
SPEND_COLUMNS += ["amount_count_3d"]
EVENTS = [  # (customer, time, amount): two events per customer and day
    (1, at(0, 10), 10.0),
    (1, at(0, 20), 5.0),
    (1, at(1, 9), 20.0),
    (1, at(1, 11), 1.0),
    (1, at(2, 12), 7.0),
    (1, at(2, 13), 3.0),
    (2, at(0, 8), 3.0),
    (2, at(0, 9), 2.0),
    (2, at(2, 1), 4.0),
    (2, at(2, 23), 6.0),
]
APPENDED = [
    (1, at(1, 15), 100.0),  # late: in the tile of day 1, which the tiles already hold
    (2, at(3, 10), 50.0),
    (3, at(3, 11), 8.0),
]


def purchases(events: list[tuple[int, datetime, float]], first_order: int) -> pd.DataFrame:
    rows = [(first_order + i, ts, c, a) for i, (c, ts, a) in enumerate(events)]
    return pd.DataFrame(rows, columns=["order_id", "event_timestamp", "customer_id", "amount"])


def daily_tiles(events: list[tuple[int, datetime, float]]) -> list[tuple[Any, ...]]:
    """(customer, tile end, events, their sum): a tile is the day (end - 1d, end]."""
    tiles: dict[tuple[int, datetime], tuple[int, float]] = {}
    for customer, ts, amount in events:
        end = datetime(ts.year, ts.month, ts.day) + timedelta(days=1)
        n, total = tiles.get((customer, end), (0, 0.0))
        tiles[(customer, end)] = (n + 1, total + amount)
    return sorted((c, end, n, total) for (c, end), (n, total) in tiles.items())


def spend_as_of(events: list[tuple[int, datetime, float]], t: datetime) -> list[tuple[Any, ...]]:
    """Each customer's window values as of `t` (a window w holds t - w < ts <= t)."""

    def inside(customer: int, window: timedelta) -> list[float]:
        return [a for c, ts, a in events if c == customer and t - window < ts <= t]

    out = []
    for customer in sorted({c for c, ts, _ in events if ts <= t}):
        one_day, three_days = inside(customer, timedelta(days=1)), inside(customer, timedelta(3))
        sum_1d = math.fsum(one_day) if one_day else None
        sum_3d = math.fsum(three_days) if three_days else None
        out.append((customer, t, sum_1d, sum_3d, len(three_days)))
    return out


def stored_tiles(store: FeatureStore, path: str) -> list[tuple[Any, ...]]:
    """(customer, tile end, events, their sum) of the tiles table: the sum's partials are the
    `*_n` and `*_s` columns of one name."""
    frame = store.spark.read.format("delta").load(path)
    total = next(c for c in frame.columns if c.endswith("_s"))
    count = total[:-2] + "_n"
    rows = frame.select("customer_id", "tile_end", count, total).collect()
    return sorted(tuple(r) for r in rows if r[2])


def test_aggregation_tiles_are_built_refreshed_and_read_on_s3(store: FeatureStore) -> None:
    store.register_features(PURCHASES)
    store.register_features(SPEND)
    store.write_features("purchases", purchases(EVENTS, 0))
    tiles = f"{store.config.storage_path}/_tiles/customer_spend_v1"

    first_version = store.materialize_aggregations("customer_spend", as_of=at(3)).delta_version
    assert storage.is_delta_table(tiles)
    assert stored_tiles(store, tiles) == daily_tiles(EVENTS)
    gold = store.read_table("customer_spend")
    assert sorted_rows(gold, SPEND_COLUMNS) == spend_as_of(EVENTS, at(3))

    store.write_features("purchases", purchases(APPENDED, 100))
    store.materialize_aggregations("customer_spend", as_of=at(4))
    every = EVENTS + APPENDED
    assert stored_tiles(store, tiles) == daily_tiles(every)
    # the refresh rewrote the tiles from the late event's day on, not the whole table
    history = store.spark.sql(f"DESCRIBE HISTORY delta.`{tiles}`").orderBy("version").collect()
    assert [h["version"] for h in history] == [0, 1]
    assert "predicate" not in history[0]["operationParameters"]  # built whole
    assert "tile_end" in history[1]["operationParameters"]["predicate"]  # then from one day on
    metrics = history[1]["operationMetrics"]  # rows of the files rewritten are copied
    written = int(metrics["numOutputRows"]) - int(metrics.get("numCopiedRows", 0))
    assert written == len([t for t in daily_tiles(every) if t[1] > at(1)]), metrics
    materialized = spend_as_of(EVENTS, at(3)) + spend_as_of(every, at(4))
    assert (1, at(4), None, 131.0, 5) in materialized  # the late event is in the 3d window
    assert sorted_rows(store.read_table("customer_spend"), SPEND_COLUMNS) == sorted(materialized)
    # the first materialization's rows, by time travel to the version it wrote
    first = store.read_table("customer_spend", as_of_version=first_version)
    assert sorted_rows(first, SPEND_COLUMNS) == spend_as_of(EVENTS, at(3))


# -- the server's audit table -----------------------------------------------------------------


async def audited_requests(app: Any, admin: str, group: dict[str, Any]) -> list[httpx.Response]:
    """Three requests to the server app in this process, inside its lifespan (which starts the
    audit committer and, at its end, commits what is queued)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
            key = {"X-API-Key": admin}
            return [
                await client.post("/v1/features/register", json=group, headers=key),
                await client.post(
                    "/v1/features/register",
                    json={**group, "features": [{"name": "x", "type": "nope"}]},
                    headers=key,
                ),
                await client.get("/v1/features", headers={"X-API-Key": "not-a-key"}),
            ]


def test_server_audit_rows_are_committed_to_s3(store: FeatureStore) -> None:
    admin = ApiKeyStore(Registry(store.config)).create("audit-admin", "admin").token
    settings = ServerSettings(audit_flush_seconds=0.2, key_cache_seconds=0, offline_nice=0)
    group = {
        "name": "audited",
        "entity_keys": ["user_id"],
        "features": [{"name": "x", "type": "double"}],
    }
    created, refused, denied = asyncio.run(
        audited_requests(create_app(store, settings), admin, group)
    )
    assert (created.status_code, refused.status_code, denied.status_code) == (200, 422, 401)

    audit = AuditLog.for_store(store.config)  # a reader of its own: the rows come from S3
    assert audit.path == f"{store.config.storage_path}/_server/audit"
    rows = {row["request_id"]: row for row in audit.read()}
    ok = rows[created.headers["x-request-id"]]
    assert (ok["action"], ok["resource"], ok["result"], ok["status"]) == (
        "register",
        "audited@1",
        "ok",
        200,
    )
    assert ok["key_name"] == "audit-admin" and ok["role"] == "admin"
    rejected = rows[refused.headers["x-request-id"]]
    assert (rejected["result"], rejected["status"], rejected["code"]) == (
        "rejected",
        422,
        "schema_validation_failed",
    )
    unknown = rows[denied.headers["x-request-id"]]
    assert (unknown["result"], unknown["status"], unknown["code"]) == (
        "denied",
        401,
        "invalid_api_key",
    )
    assert reopened(store).registry.get_group("audited").feature_names == ("x",)
