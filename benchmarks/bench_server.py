"""The HTTP feature server: requests/s and latency of POST /v1/features/serve under a bounded load.

    .venv/bin/python benchmarks/bench_server.py                       # 10k entities x 20 features
    .venv/bin/python benchmarks/bench_server.py --requests 4000 --concurrency 16
    .venv/bin/python benchmarks/bench_server.py --load-only --requests 500   # the load run alone

Starts its own redis-server and `featurelake serve` (one uvicorn process) on free loopback
ports, both stopped at the end; no Spark is started. It fills the Redis online store with a
20-feature group, then measures, for 1 entity x 20 features and 100 entities x 20 features:
  1. the baseline: `FeatureStore.get_online_features` in this process, same Redis, same
     entities (p50 / p99, and calls/s of one caller);
  2. the server: `--concurrency` clients (asyncio + httpx, keep-alive) sending `--requests`
     requests in total (p50 / p99 per request, requests/s of the whole load).
Reports the server's p50 / p99 as ratios to the in-process read. Then the load run: a Gold
table of `--history-rows` rows is written (Spark in this process), and `serve` (1 entity x 20
features, `--concurrency` clients) is measured idle, then while `--historical` slow historical
requests (Spark, 1,000 entities, daily windows) run at once on the server's offline threads
(sent from a process of their own, so that their large answers do not slow the serve clients);
it reports the loaded p99 as a ratio to the idle p99 (the target is within 2x), and serve
measured idle again after the load (the machine's noise floor, for comparison); serve traffic
lasts as long as the historical requests (at most 100 passes over its --requests batches).
Every other loop is bounded by --requests; all traffic stays on 127.0.0.1.

The catalog run (`--catalog-only` runs just it): a registry of `--catalog-groups` groups, each
with a write, statistics and a check report, served in this process; it times the search page
`/ui` listing all of them (server side, from the `Server-Timing` header, and over HTTP) against
the JSON list `GET /v1/features?limit=500` of the same groups (the baseline; target: the page
well under a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema
from featurelake.server.auth import ApiKeyStore
from featurelake.serving import FeatureStore

GROUP = "bench_features"
FEATURES = (
    [{"name": f"amount_{i}", "type": "double"} for i in range(12)]
    + [{"name": f"count_{i}", "type": "bigint"} for i in range(5)]
    + [{"name": "segment", "type": "string"}, {"name": "city", "type": "string"}]
    + [{"name": "active", "type": "boolean"}]
)
SCHEMA = FeatureGroupSchema(GROUP, ["entity_id"], FEATURES)
REFS = [f"{GROUP}.{f['name']}" for f in FEATURES]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=0.5)
    for _ in range(200):
        try:
            if client.ping():
                client.close()
                return process, f"redis://127.0.0.1:{port}/0"
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def fill(store: FeatureStore, entities: int) -> None:
    rng = random.Random(7)
    start = datetime(2024, 1, 1)
    batch = []
    for entity in range(entities):
        row: dict[str, Any] = {
            "entity_id": entity,
            "event_timestamp": start + timedelta(seconds=entity),
            "segment": rng.choice(["a", "b", "c"]),
            "city": rng.choice(["paris", "lyon", "nice"]),
            "active": rng.random() < 0.5,
        }
        row.update({f"amount_{i}": rng.random() * 100 for i in range(12)})
        row.update({f"count_{i}": rng.randrange(1000) for i in range(5)})
        batch.append(row)
        if len(batch) == 5_000:
            store.online.write_batch(SCHEMA, batch)
            batch = []
    if batch:
        store.online.write_batch(SCHEMA, batch)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def direct(store: FeatureStore, batches: list[list[int]]) -> dict[str, float]:
    """The in-process read: one caller, one batch after the other."""
    for entities in batches[:20]:  # warm the plan cache and the connection pool
        store.get_online_features(REFS, entities)
    times = []
    started = time.perf_counter()
    for entities in batches:
        t0 = time.perf_counter()
        store.get_online_features(REFS, entities)
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    return summary(times, wall)


def summary(times: list[float], wall: float) -> dict[str, float]:
    return {
        "p50_ms": percentile(times, 0.50) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "per_s": len(times) / wall,
    }


async def over_http(
    url: str,
    token: str,
    batches: list[list[int]],
    concurrency: int,
    times: list[float] | None = None,
) -> dict[str, float]:
    """`concurrency` clients share the batches; each waits for its answer before the next.
    Each request's seconds are appended to `times` when it is given."""
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for entities in batches:
        queue.put_nowait(entities)
    times = [] if times is None else times
    headers = {"X-API-Key": token}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            for entities in batches[:5]:  # warm-up, not timed
                (await http.post("/v1/features/serve", json=body(entities))).raise_for_status()
            while True:
                try:
                    entities = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                response = await http.post("/v1/features/serve", json=body(entities))
                times.append(time.perf_counter() - t0)
                response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return summary(times, time.perf_counter() - started)


def server_side(url: str) -> dict[str, float]:
    """The server's own p50 / p99 of the serve route (its last 2048 requests, /v1/metrics)."""
    out = {}
    for line in httpx.get(f"{url}/v1/metrics", timeout=10).text.splitlines():
        if line.startswith("featurelake_http_request_duration_quantile_seconds{") and (
            'route="/v1/features/serve"' in line
        ):
            quantile = line.split('quantile="')[1].split('"')[0]
            if quantile in ("0.5", "0.99"):
                name = "server_p50_ms" if quantile == "0.5" else "server_p99_ms"
                out[name] = float(line.rsplit(" ", 1)[1]) * 1000
    return out


HISTORY = "bench_history"
HISTORY_SCHEMA = FeatureGroupSchema(
    HISTORY,
    ["entity_id"],
    [{"name": "amount", "type": "double"}, {"name": "items", "type": "bigint"}],
    entity_key_types={"entity_id": "bigint"},
)


def fill_history(store: FeatureStore, rows: int) -> None:
    """A Gold table of `rows` events over 1,000 entities and 90 days (Spark)."""
    import pandas as pd

    rng = random.Random(5)
    start = datetime(2024, 1, 1)
    store.register_features(HISTORY_SCHEMA)
    frame = pd.DataFrame(
        {
            "entity_id": [i % 1_000 for i in range(rows)],
            "event_timestamp": [
                start + timedelta(seconds=rng.randrange(90 * 86_400)) for _ in range(rows)
            ],
            "amount": [rng.random() * 100 for _ in range(rows)],
            "items": [rng.randrange(10) for _ in range(rows)],
        }
    )
    store.write_features(HISTORY, frame)


def historical_body() -> dict[str, Any]:
    return {
        "features": [f"{HISTORY}.amount", f"{HISTORY}.items"],
        "entities": list(range(1_000)),
        "start": "2024-01-01T00:00:00",
        "end": "2024-04-01T00:00:00",
        "aggregations": ["latest", "avg", "max", "count"],
        "window": "1d",
        "engine": "spark",
    }


LOADED_ROUNDS = 100  # serve loops over its batches at most this often while the load runs
SPAWN = multiprocessing.get_context("spawn")


def historical_load(
    url: str, token: str, slow: int, answers: multiprocessing.Queue[tuple[list[int], list[float]]]
) -> None:
    """`slow` historical requests at once, sent from a process of their own so that receiving
    their large answers does not hold up the serve clients measured in the parent's loop."""
    statuses: list[int] = []
    seconds: list[float] = []

    async def one_historical(http: httpx.AsyncClient) -> None:
        t0 = time.perf_counter()
        response = await http.post("/v1/features/historical", json=historical_body())
        seconds.append(time.perf_counter() - t0)
        statuses.append(response.status_code)

    async def all_at_once() -> None:
        limits = httpx.Limits(max_connections=slow)
        async with httpx.AsyncClient(
            base_url=url, headers={"X-API-Key": token}, timeout=600, limits=limits
        ) as http:
            await asyncio.gather(*(one_historical(http) for _ in range(slow)))

    asyncio.run(all_at_once())
    answers.put((statuses, seconds))


async def load_run(
    url: str, token: str, batches: list[list[int]], concurrency: int, slow: int
) -> dict[str, Any]:
    """Serve p99 while `slow` historical requests run, against the idle p99 of the same run."""
    headers = {"X-API-Key": token}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as http:
        warm = await http.post("/v1/features/historical", json=historical_body())
        warm.raise_for_status()  # Spark started and the table read once: not timed
    idle_times: list[float] = []
    idle = await over_http(url, token, batches, concurrency, idle_times)
    answers: multiprocessing.Queue[tuple[list[int], list[float]]] = SPAWN.Queue()
    load = SPAWN.Process(target=historical_load, args=(url, token, slow, answers))
    loaded_times: list[float] = []

    async def serve_while() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            for n in range(LOADED_ROUNDS * len(batches)):  # until the load ends (bounded)
                entities = batches[n % len(batches)]
                if not load.is_alive():
                    return
                t0 = time.perf_counter()
                response = await http.post("/v1/features/serve", json=body(entities))
                loaded_times.append(time.perf_counter() - t0)
                response.raise_for_status()

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    load.start()
    await asyncio.sleep(3)  # the load process is up and its historical requests are in
    await asyncio.gather(*(serve_while() for _ in range(concurrency)))
    served_for = time.perf_counter() - started
    statuses, seconds = answers.get(timeout=60)
    load.join(timeout=60)
    loaded = summary(loaded_times, served_for)
    after_times: list[float] = []
    after = await over_http(url, token, batches, concurrency, after_times)  # idle again
    # On a shared machine one idle window's p99 moves several-fold between runs: the baseline
    # is the p99 of both idle windows' requests together (before and after the load).
    idle_both = summary(idle_times + after_times, 1.0)
    return {
        "idle": idle,
        "loaded": loaded,
        "idle_after": after,
        "idle_both": idle_both,
        "loaded_requests": len(loaded_times),
        "loaded_seconds": served_for,
        "historical": {
            "requests": slow,
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "p50_s": percentile(seconds, 0.5),
            "max_s": max(seconds),
        },
        "p99_ratio": loaded["p99_ms"] / idle_both["p99_ms"],
        "p50_ratio": loaded["p50_ms"] / idle_both["p50_ms"],
        "p99_ratio_before": loaded["p99_ms"] / idle["p99_ms"],
        "p99_ratio_after": loaded["p99_ms"] / after["p99_ms"],
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def body(entities: list[int]) -> dict[str, Any]:
    return {"features": REFS, "entities": entities}


def start_server(config_file: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(VENV_BIN / "featurelake"),
            "--config",
            str(config_file),
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--offline-timeout-seconds",
            "900",
            *os.environ.get("BENCH_SERVE_ARGS", "").split(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("featurelake serve did not start")


def fill_catalog(config: FeatureStoreConfig, groups: int) -> None:
    """`groups` registered groups with a write, statistics and a check each (3 commits)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from featurelake.quality.checks import CHECKS
    from featurelake.quality.stats import STATS, FeatureStatistics, GroupStatistics
    from featurelake.registry.deltars_kv import OBJECT_SCHEMA
    from featurelake.registry.registry import GROUP as GROUP_KIND
    from featurelake.registry.registry import WRITE, _group_payload, group_key

    registry = Registry(config)
    registry.tables.ensure_tables()
    now = datetime.now(UTC).replace(tzinfo=None)
    schemas = [
        FeatureGroupSchema(
            f"group_{n:04d}",
            ["customer_id" if n % 2 else "store_id"],
            [{"name": f"f{i}", "type": "double"} for i in range(8)],
            description=f"Bench group {n} of the catalog benchmark.",
            owner=f"team-{n % 7}",
            tags={"domain": f"d{n % 5}"},
            freshness="1d",
        )
        for n in range(groups)
    ]
    rows = [
        {
            "kind": GROUP_KIND,
            "key": group_key(s.name, s.version),
            "payload": json.dumps(_group_payload(s)),
            "updated_at": now,
        }
        for s in schemas
    ]
    write_deltalake(
        registry.tables.objects, pa.Table.from_pylist(rows, schema=OBJECT_SCHEMA), mode="append"
    )
    quantiles = {f"p{q}": float(q) for q in (1, 5, 25, 50, 75, 95, 99)}
    writes, stats, checks = [], [], []
    for s in schemas:
        key = group_key(s.name, s.version)
        writes.append(
            (
                WRITE,
                key,
                {
                    "mode": "append",
                    "rows_written": 1000,
                    "delta_version": 0,
                    "row_count": 1000,
                    "duration_seconds": 1.0,
                    "at": now.isoformat(),
                },
            )
        )
        features = {
            f.name: FeatureStatistics(
                f.name, "numerical", 1000, 10, 0.01, 900, 50.0, 10.0, 0.0, 100.0, quantiles
            )
            for f in s.features
        }
        stats.append(
            (
                STATS,
                key,
                GroupStatistics(
                    s.name,
                    s.version,
                    0,
                    1000,
                    now.isoformat(),
                    now.isoformat(),
                    now.isoformat(),
                    features,
                ).to_dict(),
            )
        )
        checks.append(
            (
                CHECKS,
                key,
                {
                    "group": s.name,
                    "version": s.version,
                    "total_rows": 1000,
                    "results": [],
                    "checked_at": now.isoformat(),
                    "passed": True,
                },
            )
        )
    for batch in (writes, stats, checks):
        registry.append_events(batch)


def catalog_run(workdir: Path, groups: int, repeats: int) -> dict[str, Any]:
    """Time `/ui` (all `groups` groups) and the JSON list of the same groups."""
    import threading

    import uvicorn

    from featurelake.server import ServerSettings, create_app

    config = FeatureStoreConfig(storage_path=str(workdir / "catalog_store"))
    t0 = time.perf_counter()
    fill_catalog(config, groups)
    print(
        f"registered {groups} groups with writes, statistics and checks "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    token = ApiKeyStore(Registry(config)).create("bench-catalog", "reader").token
    store = FeatureStore(config)
    app = create_app(store, ServerSettings(audit_flush_seconds=0.5))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120, follow_redirects=True) as http:
            signed = http.post("/ui/sign-in", data={"api_key": token, "next": "/ui"})
            assert signed.status_code == 200, signed.status_code
            assert signed.text.count('class="group-row"') == groups, "not every group listed"
            page_server, page_wall, list_wall = [], [], []
            for _ in range(repeats):
                t = time.perf_counter()
                page = http.get("/ui")
                page_wall.append((time.perf_counter() - t) * 1000)
                timing = page.headers["server-timing"]
                page_server.append(float(timing.partition("dur=")[2]))
                t = time.perf_counter()
                listed = http.get(
                    "/v1/features", params={"limit": 500}, headers={"X-API-Key": token}
                )
                list_wall.append((time.perf_counter() - t) * 1000)
                assert listed.status_code == 200 and listed.json()["total"] == groups
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()
    out = {
        "groups": groups,
        "page_server_p50_ms": percentile(page_server, 0.5),
        "page_server_max_ms": max(page_server),
        "page_http_p50_ms": percentile(page_wall, 0.5),
        "json_list_http_p50_ms": percentile(list_wall, 0.5),
        "page_bytes": len(page.content),
    }
    out["page_to_json_ratio"] = out["page_http_p50_ms"] / out["json_list_http_p50_ms"]
    print(
        f"catalog /ui with {groups} groups: server side p50 {out['page_server_p50_ms']:.0f} ms "
        f"(max {out['page_server_max_ms']:.0f} ms), over HTTP p50 {out['page_http_p50_ms']:.0f} "
        f"ms, {out['page_bytes'] / 1024:.0f} KiB | JSON list of the same groups p50 "
        f"{out['json_list_http_p50_ms']:.0f} ms | page/JSON {out['page_to_json_ratio']:.1f}x "
        "(target: page well under 1 s)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2_000, help="per scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--historical", type=int, default=20, help="slow requests in the load run")
    parser.add_argument("--history-rows", type=int, default=200_000)
    parser.add_argument("--catalog-groups", type=int, default=500)
    parser.add_argument("--catalog-repeats", type=int, default=20)
    parser.add_argument(
        "--catalog-only", action="store_true", help="run only the catalog page timing"
    )
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="run only the load run (serve p99 idle and during slow historical requests)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_server_"))
    if args.catalog_only:
        try:
            print(json.dumps(catalog_run(workdir, args.catalog_groups, args.catalog_repeats)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    redis_process, redis_url = start_redis(workdir)
    server = None
    try:
        config = FeatureStoreConfig(
            storage_path=str(workdir / "store"),
            enable_online_store=True,
            online_backend=OnlineBackend.REDIS,
            online_url=redis_url,
            online_timeout_ms=5_000,
        )
        config_file = workdir / "featurelake.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "storage_path": config.storage_path,
                    "enable_online_store": True,
                    "online_backend": "redis",
                    "online_url": redis_url,
                    "online_timeout_ms": 5_000,
                }
            )
        )
        store = FeatureStore(config)
        store.registry.register_group(SCHEMA)
        # Registered before the server starts: a running server sees groups that other
        # processes register within metadata_cache_ttl_seconds (30 s), longer than a fast write.
        store.registry.register_group(HISTORY_SCHEMA)
        t0 = time.perf_counter()
        fill(store, args.entities)
        print(
            f"filled Redis with {args.entities:,} entities x 20 features "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        token = ApiKeyStore(Registry(config)).create("bench", "reader").token
        port = free_port()
        server = start_server(config_file, port)
        url = f"http://127.0.0.1:{port}"
        rng = random.Random(11)
        results: dict[str, Any] = {}
        for size in () if args.load_only else (1, 100):
            batches = [
                [rng.randrange(args.entities) for _ in range(size)] for _ in range(args.requests)
            ]
            baseline = direct(store, batches)
            served = asyncio.run(over_http(url, token, batches, args.concurrency))
            served.update(server_side(url))
            results[f"{size}x20"] = {
                "direct": baseline,
                "http": served,
                "p50_ratio": served["p50_ms"] / baseline["p50_ms"],
                "p99_ratio": served["p99_ms"] / baseline["p99_ms"],
            }
            print(
                f"{size:>3} entities x 20 features: in-process p50 {baseline['p50_ms']:.2f} ms, "
                f"p99 {baseline['p99_ms']:.2f} ms, {baseline['per_s']:.0f} calls/s | "
                f"HTTP ({args.concurrency} clients) p50 {served['p50_ms']:.2f} ms, "
                f"p99 {served['p99_ms']:.2f} ms, {served['per_s']:.0f} requests/s "
                f"(server side p50 {served['server_p50_ms']:.2f} ms, "
                f"p99 {served['server_p99_ms']:.2f} ms) | "
                f"HTTP/in-process p50 {served['p50_ms'] / baseline['p50_ms']:.1f}x, "
                f"p99 {served['p99_ms'] / baseline['p99_ms']:.1f}x"
            )
        history_store = FeatureStore(config.replace(spark_master="local[1]"))
        t0 = time.perf_counter()
        fill_history(history_store, args.history_rows)
        print(f"wrote {args.history_rows:,} events to Gold in {time.perf_counter() - t0:.1f} s")
        batches = [[rng.randrange(args.entities)] for _ in range(args.requests)]
        load = asyncio.run(load_run(url, token, batches, args.concurrency, args.historical))
        results["load"] = load
        print(
            f"serve 1x20 while {args.historical} historical requests run: p99 "
            f"{load['loaded']['p99_ms']:.2f} ms ({load['loaded_requests']} requests over "
            f"{load['loaded_seconds']:.0f} s) vs idle p99 "
            f"{load['idle_both']['p99_ms']:.2f} ms: {load['p99_ratio']:.2f}x (target <= 2x; "
            f"idle before {load['idle']['p99_ms']:.2f} ms: {load['p99_ratio_before']:.2f}x, "
            f"after {load['idle_after']['p99_ms']:.2f} ms: {load['p99_ratio_after']:.2f}x); "
            f"p50 {load['loaded']['p50_ms']:.2f} vs {load['idle_both']['p50_ms']:.2f} ms "
            f"({load['p50_ratio']:.2f}x); "
            f"historical answers {load['historical']['statuses']}, "
            f"p50 {load['historical']['p50_s']:.1f} s, max {load['historical']['max_s']:.1f} s; "
            f"load average {load['load_average'][0]} -> {load['load_average'][1]}"
        )
        store.close()
        if not args.load_only:
            results["catalog"] = catalog_run(workdir, args.catalog_groups, args.catalog_repeats)
        print(json.dumps(results, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        redis_process.kill()
        redis_process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
