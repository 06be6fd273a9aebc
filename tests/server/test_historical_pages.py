"""Historical answers larger than a page come in pages of consecutive entities."""

from __future__ import annotations

import base64
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from featurelake.schema import FeatureGroupSchema
from featurelake.server import ServerSettings, create_app

from .conftest import LiveServer, start_server

pytestmark = [pytest.mark.redis, pytest.mark.spark]

START = datetime(2024, 3, 1)
ENTITIES = [3, 1, 2, 2, 5, 4, 6, 7, 99]  # a repeat, and 99 has no rows
BODY: dict[str, Any] = {
    "features": ["ledger.amount", "ledger.seen"],
    "entities": ENTITIES,
    "start": START.isoformat(),
    "end": (START + timedelta(days=3)).isoformat(),
    "aggregations": ["latest", "max", "count"],
    "window": "1d",
}
# 3 windows x 2 features x 3 aggregations = 18 values per entity: 2 entities a page.
PAGE_CELLS = 40


def _events() -> list[dict[str, Any]]:
    events = []
    for entity in range(1, 8):
        for hour in range(0, 72, 5):
            at = START + timedelta(hours=hour, minutes=entity)
            events.append(
                {
                    "id": entity,
                    "event_timestamp": at,
                    "amount": round(entity * 10 + hour / 7, 3),
                    # some with a fraction of a second, rendered as isoformat() does
                    "seen": at + timedelta(microseconds=123_456 * (hour % 2)),
                }
            )
    return events


def _expected(events: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    buckets: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        day = event["event_timestamp"].replace(hour=0, minute=0)
        buckets[(event["id"], day.isoformat())].append(event)
    out = {}
    for where, rows in buckets.items():
        last = max(rows, key=lambda r: r["event_timestamp"])
        out[where] = {
            "amount__latest": last["amount"],
            "amount__max": max(r["amount"] for r in rows),
            "amount__count": len(rows),
            "seen__latest": last["seen"].isoformat(),
            "seen__max": max(r["seen"] for r in rows).isoformat(),
            "seen__count": len(rows),
        }
    return out


@pytest.fixture(scope="module")
def ledger(live_server: LiveServer) -> list[dict[str, Any]]:
    import pandas as pd

    events = _events()
    store = live_server.store
    store.register_features(
        FeatureGroupSchema(
            "ledger",
            ["id"],
            [{"name": "amount", "type": "double"}, {"name": "seen", "type": "timestamp"}],
            entity_key_types={"id": "bigint"},
        )
    )
    store.write_features("ledger", pd.DataFrame(events))
    return events


@pytest.fixture(scope="module")
def paged_url(live_server: LiveServer, ledger: list[dict[str, Any]]) -> Iterator[str]:
    """A second app on the same store whose pages hold at most PAGE_CELLS values (with the
    default offline priority settings: the store was given the test run's session, which keeps
    its priority)."""
    settings = ServerSettings(key_cache_seconds=0, historical_page_cells=PAGE_CELLS)
    url, stop = start_server(create_app(live_server.store, settings))
    yield url
    stop()


def _all_pages(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    pages = []
    token = None
    while True:
        response = client.post("/v1/features/historical", json={**body, "page_token": token})
        assert response.status_code == 200, response.text
        pages.append(response.json())
        token = pages[-1]["next_page_token"]
        if token is None:
            return pages
        assert len(pages) < 20, "the pages never end"


def _by_row(rows: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    out = {}
    for row in rows:
        where = (row["entity"]["id"], row["window_start"])
        assert where not in out, f"{where} answered twice"
        assert datetime.fromisoformat(row["window_end"]) - datetime.fromisoformat(
            row["window_start"]
        ) == timedelta(days=1)
        out[where] = row["values"]
    return out


@pytest.mark.parametrize("engine", ["spark", "duckdb"])
def test_a_large_answer_comes_in_pages_of_entities(
    live_server: LiveServer, ledger: list[dict[str, Any]], paged_url: str, engine: str
) -> None:
    body = {**BODY, "engine": engine}
    headers = {"X-API-Key": live_server.admin}
    with live_server.client(live_server.admin) as client:
        whole = client.post("/v1/features/historical", json=body)
    with httpx.Client(base_url=paged_url, headers=headers, timeout=120) as client:
        pages = _all_pages(client, body)

    assert whole.status_code == 200, whole.text
    assert whole.json()["next_page_token"] is None  # under the default page size: one page
    expected = _expected(ledger)
    assert _by_row(whole.json()["rows"]) == expected
    # 8 distinct entities, 2 a page; each page reads only its own entities
    assert [p["metadata"]["page"] for p in pages] == [
        {"entity_offset": offset, "entities": 2, "total_entities": 8} for offset in (0, 2, 4, 6)
    ]
    wanted = list(dict.fromkeys(ENTITIES))
    for number, page in enumerate(pages):
        assert page["metadata"]["engine"] == engine
        ids = {row["entity"]["id"] for row in page["rows"]}
        assert ids <= set(wanted[number * 2 : number * 2 + 2])
        cells = sum(len(row["values"]) for row in page["rows"])
        assert cells <= PAGE_CELLS
        # within a page: ordered by entity, then window
        order = [(row["entity"]["id"], row["window_start"]) for row in page["rows"]]
        assert order == sorted(order)
    assert _by_row([row for page in pages for row in page["rows"]]) == expected


def test_page_size_asks_for_smaller_pages(
    live_server: LiveServer, ledger: list[dict[str, Any]]
) -> None:
    with live_server.client(live_server.admin) as client:
        pages = _all_pages(client, {**BODY, "page_size": 7})  # 3 windows an entity: 2 entities
    assert [p["metadata"]["page"]["entities"] for p in pages] == [2, 2, 2, 2]
    rows = [row for page in pages for row in page["rows"]]
    assert _by_row(rows) == _expected(ledger)


def test_a_page_token_only_continues_its_own_request(
    live_server: LiveServer, paged_url: str
) -> None:
    headers = {"X-API-Key": live_server.admin}
    with httpx.Client(base_url=paged_url, headers=headers, timeout=120) as client:
        first = client.post("/v1/features/historical", json=BODY)
        token = first.json()["next_page_token"]
        other_body = client.post(
            "/v1/features/historical",
            json={**BODY, "aggregations": ["count"], "page_token": token},
        )
        forged = base64.urlsafe_b64encode(
            json.dumps(
                {"o": 10**6, "r": json.loads(base64.urlsafe_b64decode(token + "=="))["r"]}
            ).encode()
        ).decode()
        past_the_end = client.post("/v1/features/historical", json={**BODY, "page_token": forged})
        garbage = client.post("/v1/features/historical", json={**BODY, "page_token": "%%%"})
    assert first.status_code == 200 and token
    for refused in (other_body, past_the_end, garbage):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_page_token"


def test_a_session_given_to_the_store_keeps_its_priority(
    live_server: LiveServer, paged_url: str
) -> None:
    """Offline work lowers only a driver the server's store started (priority.py): the test
    run's JVM, given to the store, keeps its priority and scheduling class."""
    with httpx.Client(base_url=paged_url, timeout=120) as client:
        response = client.post(
            "/v1/features/historical",
            json={**BODY, "engine": "spark"},
            headers={"X-API-Key": live_server.admin},
        )
    assert response.status_code == 200, response.text
    jvm = live_server.store.spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
    threads = [int(t) for t in os.listdir(f"/proc/{jvm}/task")]
    assert {os.getpriority(os.PRIO_PROCESS, t) for t in threads} == {0}
    assert os.SCHED_IDLE not in {os.sched_getscheduler(t) for t in threads}
