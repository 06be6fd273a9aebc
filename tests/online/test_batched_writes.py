"""The sync's batched writes (`OnlineStore.write_arrow`): Redis encodes Arrow columns and runs
the compare-and-set over many keys per script call; every outcome must equal the memory store's
row-by-row compare-and-set and the bytes of the record path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from featurelake.online import InMemoryOnlineStore, OnlineStore, RedisOnlineStore
from featurelake.online.arrow_rows import INGESTED_COLUMN, TS_COLUMN, column_batches
from featurelake.online.redis_store import ARROW_CHUNK_ROWS, SCRIPT_KEYS
from featurelake.schema import FeatureGroupSchema

pytestmark = pytest.mark.redis

SCHEMA = FeatureGroupSchema(
    "batched",
    ["user_id"],
    [
        {"name": "clicks", "type": "bigint"},
        {"name": "score", "type": "double"},
        {"name": "tier", "type": "string"},
        {"name": "active", "type": "boolean"},
    ],
)
T = 1_700_000_000_000_000  # epoch us


def rows(entities: list[int], event_us: int | list[int], ingested_us: int | None, tag: str) -> Any:
    """A latest-rows table: one row per listed entity (repeats allowed, in order)."""
    count = len(entities)
    events = event_us if isinstance(event_us, list) else [event_us] * count
    return pa.table(
        {
            "user_id": pa.array(entities, pa.int64()),
            TS_COLUMN: pa.array(events, pa.int64()),
            INGESTED_COLUMN: pa.array([ingested_us] * count, pa.int64()),
            "clicks": pa.array([e * 10 for e in entities], pa.int64()),
            "score": pa.array([None if e % 7 == 0 else e / 4 for e in entities], pa.float64()),
            "tier": pa.array([f"{tag}-{e}" for e in entities], pa.string()),
            "active": pa.array([e % 2 == 0 for e in entities], pa.bool_()),
        }
    )


@pytest.fixture
def pair(redis_server: Any) -> Iterator[tuple[RedisOnlineStore, InMemoryOnlineStore]]:
    """A Redis store (own namespace) and the memory store as the reference."""
    redis_store = RedisOnlineStore(redis_server.url, namespace=f"b{uuid.uuid4().hex[:8]}")
    memory = InMemoryOnlineStore()
    for store in (redis_store, memory):
        store.register_schema(SCHEMA)
    yield redis_store, memory
    redis_store.close()


def state(store: OnlineStore, entities: list[int]) -> list[tuple[Any, ...]]:
    """(values, event time) of each entity, as reads see them."""
    vectors = store.get("batched.*", entities)
    return [(tuple(v.to_list()), v.event_time("clicks")) for v in vectors]


def both(pair: tuple[RedisOnlineStore, InMemoryOnlineStore], table: Any) -> tuple[int, int]:
    """Write `table` to both stores; their counts must agree."""
    redis_store, memory = pair
    counts = redis_store.write_arrow(SCHEMA, [table])
    assert counts == memory.write_arrow(SCHEMA, [table])
    return counts


def test_older_events_never_overwrite_newer_ones_in_one_batch(
    pair: tuple[RedisOnlineStore, InMemoryOnlineStore],
) -> None:
    everyone = list(range(120))
    assert both(pair, rows(list(range(100)), T, 5, "first")) == (100, 0)
    # One batch mixing every case, keys interleaved: older events (0..29), newer (30..59),
    # the same event with an older ingestion (60..79) and a newer one (80..89), an exact
    # replay (90..99) and new entities (100..119).
    cases = [
        (range(0, 30), T - 1, 9, 0),
        (range(30, 60), T + 1, 1, 30),
        (range(60, 80), T, 4, 0),
        (range(80, 90), T, 6, 10),
        (range(90, 100), T, 5, 10),
        (range(100, 120), T - 10, None, 20),
    ]
    parts = [rows(list(r), ts, ing, "second") for r, ts, ing, _ in cases]
    mixed = pa.concat_tables(parts)
    order = sorted(range(mixed.num_rows), key=lambda i: (i * 7919) % mixed.num_rows)
    written, rejected = both(pair, mixed.take(order))
    assert (written, rejected) == (sum(c[3] for c in cases), 120 - sum(c[3] for c in cases))
    redis_store, memory = pair
    assert state(redis_store, everyone) == state(memory, everyone)
    tiers = {e: v[0][2] for e, v in zip(everyone, state(redis_store, everyone), strict=True)}
    assert {tiers[e] for e in range(0, 30)} == {f"first-{e}" for e in range(0, 30)}
    assert tiers[45] == "second-45" and tiers[70] == "first-70" and tiers[85] == "second-85"


def test_a_later_older_row_of_the_same_entity_in_one_call_is_rejected(
    pair: tuple[RedisOnlineStore, InMemoryOnlineStore],
) -> None:
    # The script runs its keys in order: the second row of entity 1 is older than the first
    # one, which it meets already written.
    table = rows([1, 2, 1, 2], [T + 5, T, T + 1, T + 2], 0, "x")
    table = table.set_column(5, "tier", pa.array(["new", "old", "older", "newer"]))
    assert both(pair, table) == (3, 1)
    redis_store, memory = pair
    assert state(redis_store, [1, 2]) == state(memory, [1, 2])
    assert [v[0][2] for v in state(redis_store, [1, 2])] == ["new", "newer"]


def test_a_replay_of_the_same_rows_changes_nothing(
    pair: tuple[RedisOnlineStore, InMemoryOnlineStore],
) -> None:
    redis_store, _ = pair
    count = ARROW_CHUNK_ROWS + SCRIPT_KEYS + 17  # several chunks and a short last call
    table = rows(list(range(count)), T, 3, "once")
    assert both(pair, table) == (count, 0)
    keys = [redis_store.key(SCHEMA, str(e)) for e in range(count)]
    before = [redis_store.client.hgetall(k) for k in keys]
    # Equal events are accepted again (that is what makes a replay idempotent) ...
    assert both(pair, table) == (count, 0)
    assert [redis_store.client.hgetall(k) for k in keys] == before
    # ... and a replay of older rows is rejected whole.
    assert both(pair, rows(list(range(count)), T - 1, 3, "stale")) == (0, count)
    assert [redis_store.client.hgetall(k) for k in keys] == before


def test_batched_writes_survive_a_script_flush(
    pair: tuple[RedisOnlineStore, InMemoryOnlineStore],
) -> None:
    redis_store, memory = pair
    both(pair, rows([1, 2], T, 0, "a"))  # the script's sha is known now
    redis_store.client.script_flush()
    count = ARROW_CHUNK_ROWS * 2 + 3
    assert both(pair, rows(list(range(count)), T + 1, 0, "b")) == (count, 0)
    assert state(redis_store, [0, 1, count - 1]) == state(memory, [0, 1, count - 1])


def test_batched_writes_keep_the_value_history(redis_server: Any) -> None:
    stores = [
        RedisOnlineStore(redis_server.url, namespace=f"h{uuid.uuid4().hex[:8]}", history_size=3),
        InMemoryOnlineStore(history_size=3),
    ]
    for store in stores:
        store.register_schema(SCHEMA)
        for step in range(4):
            store.write_arrow(SCHEMA, [rows([1, 2], T + step, 0, f"v{step}")])
        store.write_arrow(SCHEMA, [rows([1], T - 1, 0, "late")])  # rejected: no version
    redis_store, memory = stores
    for entity in (1, 2):
        history = redis_store.get_value_history("batched.tier", entity)
        assert [(h.version, h.value) for h in history] == [
            (4, f"v3-{entity}"),
            (3, f"v2-{entity}"),
            (2, f"v1-{entity}"),
        ]
        assert [(h.version, h.value, h.timestamp) for h in history] == [
            (h.version, h.value, h.timestamp)
            for h in memory.get_value_history("batched.tier", entity)
        ]
    redis_store.close()


TYPED = FeatureGroupSchema(
    "typed",
    ["region", "shop_id"],
    [
        {"name": "an_int", "type": "int"},
        {"name": "a_bigint", "type": "bigint"},
        {"name": "a_float", "type": "float"},
        {"name": "a_double", "type": "double"},
        {"name": "a_decimal", "type": "decimal(12,3)"},
        {"name": "a_string", "type": "string"},
        {"name": "a_bool", "type": "boolean"},
        {"name": "a_timestamp", "type": "timestamp"},
        {"name": "a_date", "type": "date"},
        {"name": "an_array", "type": "array<double>"},
        {"name": "a_map", "type": "map<string,bigint>"},
        {"name": "a_struct", "type": "struct<x:int,label:string>"},
    ],
)


def typed_rows(count: int) -> Any:
    """Every type, with nulls, edge values and keys holding the separator and backslashes."""

    def pick(values: list[Any], i: int) -> Any:
        return None if i % 5 == 4 else values[i % len(values)]

    regions = ["eu|west", "us\\east", "", "ü|\\|", "plain"]
    return pa.table(
        {
            "region": pa.array([regions[i % 5] for i in range(count)]),
            "shop_id": pa.array([i - 3 for i in range(count)], pa.int64()),
            TS_COLUMN: pa.array([T + i for i in range(count)], pa.int64()),
            INGESTED_COLUMN: pa.array([None if i % 3 else T for i in range(count)], pa.int64()),
            "an_int": pa.array(
                [pick([-(2**31), 0, 2**31 - 1], i) for i in range(count)], pa.int32()
            ),
            "a_bigint": pa.array([pick([-(2**63), 7, 2**63 - 1], i) for i in range(count)]),
            "a_float": pa.array(
                [pick([1.5, float("nan"), -0.0, float("inf")], i) for i in range(count)],
                pa.float32(),
            ),
            "a_double": pa.array(
                [
                    pick([0.1 + 0.2, float("-inf"), -0.0, 1e300, float("nan")], i)
                    for i in range(count)
                ]
            ),
            "a_decimal": pa.array(
                [pick([Decimal("123456789.125"), Decimal("-0.001")], i) for i in range(count)],
                pa.decimal128(12, 3),
            ),
            "a_string": pa.array([pick(["ünïcode ✓", "", "x" * 300], i) for i in range(count)]),
            "a_bool": pa.array([pick([True, False], i) for i in range(count)]),
            "a_timestamp": pa.array(
                [pick([-(10**15), 0, 1_683_356_889_123_456], i) for i in range(count)], pa.int64()
            ),
            "a_date": pa.array([pick([date(2000, 2, 29), date(1, 1, 1)], i) for i in range(count)]),
            "an_array": pa.array(
                [pick([[1.0, None, -0.0], []], i) for i in range(count)], pa.list_(pa.float64())
            ),
            "a_map": pa.array(
                [pick([[("a", 1), ("b", None)]], i) for i in range(count)],
                pa.map_(pa.string(), pa.int64()),
            ),
            "a_struct": pa.array(
                [pick([{"x": 3, "label": "three"}], i) for i in range(count)],
                pa.struct([("x", pa.int32()), ("label", pa.string())]),
            ),
        }
    )


def test_columns_encode_to_the_bytes_of_the_row_by_row_path(redis_server: Any) -> None:
    by_rows = RedisOnlineStore(redis_server.url, namespace=f"r{uuid.uuid4().hex[:8]}")
    by_columns = RedisOnlineStore(redis_server.url, namespace=f"c{uuid.uuid4().hex[:8]}")
    for store in (by_rows, by_columns):
        store.register_schema(TYPED)
    table = typed_rows(SCRIPT_KEYS + 40)
    for batch in column_batches(TYPED, table, 100):
        assert by_rows.write_columns(TYPED, batch) == (len(batch.entities), 0)
    assert by_columns.write_arrow(TYPED, [table.slice(0, 77), table.slice(77)]) == (
        table.num_rows,
        0,
    )
    client = by_rows.client
    one = sorted(k.split(b":", 1)[1] for k in client.scan_iter(f"{by_rows.namespace}:*"))
    two = sorted(k.split(b":", 1)[1] for k in client.scan_iter(f"{by_columns.namespace}:*"))
    assert one == two and len(one) == table.num_rows
    for key in one:
        left = client.hgetall(by_rows.namespace.encode() + b":" + key)
        right = client.hgetall(by_columns.namespace.encode() + b":" + key)
        assert left == right, key
    (first,) = by_columns.get("typed.*", [("eu|west", -3)])
    assert first.get("a_struct") == {"x": 3, "label": "three"}
    assert type(first.get("a_decimal")) is Decimal
    by_rows.close()
    by_columns.close()
