"""The routes under `/v1`: register, list, describe, stats, write, serve, historical, health."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader

from featurelake.errors import FeatureNotFoundError, OnlineStoreError, SchemaValidationError
from featurelake.quality.stats import GroupStatistics, statistics_history
from featurelake.schema import FeatureGroupSchema, parse_refs
from featurelake.server.access import hidden_feature, hidden_group, hidden_service, visible_group
from featurelake.server.answers import answer_chunks
from featurelake.server.auth import Access, ApiKey, AuthenticationError, Role, parse_token
from featurelake.server.encoding import FastJSONResponse, json_value
from featurelake.server.errors import EventTimeInFutureError, NotFoundError, TooManyRequestsError
from featurelake.server.historical import build_query, check_size, estimated_cells, run_query
from featurelake.server.metrics import CONTENT_TYPE
from featurelake.server.models import (
    MAX_NAME,
    ErrorResponse,
    GroupBody,
    GroupDescription,
    GroupList,
    GroupSummary,
    HealthResponse,
    HistoricalRequest,
    HistoricalResponse,
    RegisterResponse,
    ServeRequest,
    ServeResponse,
    WriteBatchRequest,
    WriteRequest,
    WriteResponse,
)
from featurelake.server.paging import page_of, request_digest
from featurelake.server.priority import lower_offline_priority
from featurelake.server.state import API_PREFIX, ServerState, jsonable, server_state

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key from 'featurelake api-key create' (or 'Authorization: Bearer KEY').",
)
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (401, "No API key, or an unknown, wrong or revoked one."),
        (403, "The key's role or feature patterns do not allow this."),
        (404, "An unknown group, feature or service, or one outside the key's rights."),
        (413, "The request body is over the size limit."),
        (422, "The request does not match its schema or the group's schema."),
        (429, "The key has as many requests in flight as it may (see Retry-After)."),
    )
}

router = APIRouter(prefix=API_PREFIX, responses=ERRORS)

State = Annotated[ServerState, Depends(server_state)]
GroupPath = Annotated[
    str,
    Path(
        max_length=140,
        description="`group` (latest version) or `group@VERSION`.",
        examples=["customer_profile", "customer_profile@1"],
    ),
]


def authenticate(
    request: Request,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> ApiKey:
    """The key of the request (X-API-Key or Authorization: Bearer), verified."""
    token = api_key
    if not token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    if token:
        request.state.claimed_key_id = parse_token(token)
    state = server_state(request)
    key = state.keys.verify(token)
    request.state.principal = key
    state.key_limits.acquire(key.id)
    request.state.key_slot = key.id  # released by the middleware when the request ends
    return key


Key = Annotated[ApiKey, Depends(authenticate)]


def audited(request: Request, action: str, resource: str) -> None:
    """Mark the request for the audit log (recorded with its result when it completes)."""
    request.state.audit = (action, resource)


# -- registry ------------------------------------------------------------------------------------


@router.post("/features/register", response_model=RegisterResponse, tags=["groups"])
def register(body: GroupBody, request: Request, state: State, key: Key) -> RegisterResponse:
    """Register a feature group version (admin): created, unchanged, or a compatible update."""
    audited(request, "register", f"{body.name}@{body.version}")
    key.require_role(Role.ADMIN, "registering feature groups")
    try:
        schema = FeatureGroupSchema.from_dict(body.model_dump(exclude_none=True))
    except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as error:
        raise SchemaValidationError(
            f"The group schema is not valid: {error}", fix="correct the schema."
        ) from None
    result = state.store.register_features(schema)
    return RegisterResponse(group=result.group, version=result.version, action=result.action)


@router.get("/features", response_model=GroupList, tags=["groups"])
def list_groups(
    state: State,
    key: Key,
    entity: Annotated[str | None, Query(max_length=128, description="An entity key name.")] = None,
    group: Annotated[str | None, Query(max_length=128, description="Name contains.")] = None,
    tag: Annotated[str | None, Query(max_length=256, description="`key` or `key=value`.")] = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> GroupList:
    """Registered groups (latest versions) with the features this key may read."""
    registry = state.store.registry
    summaries = []
    for schema in registry.list_groups():
        readable = [f for f in schema.feature_names if key.can(Access.READ, schema.name, f)]
        if not readable or not _matches(schema, entity, group, tag, owner):
            continue
        summaries.append(
            GroupSummary(
                name=schema.name,
                version=schema.version,
                versions=registry.versions(schema.name),
                entity_keys=list(schema.entity_keys),
                features=readable,
                description=schema.description,
                owner=schema.owner,
                tags=dict(schema.tags),
            )
        )
    return GroupList(
        groups=summaries[offset : offset + limit], total=len(summaries), offset=offset, limit=limit
    )


def _matches(
    schema: FeatureGroupSchema,
    entity: str | None,
    group: str | None,
    tag: str | None,
    owner: str | None,
) -> bool:
    if entity and entity not in schema.entity_keys:
        return False
    if group and group.lower() not in schema.name.lower():
        return False
    if owner and schema.owner != owner:
        return False
    if tag:
        name, has_value, value = tag.partition("=")
        if name not in schema.tags or (has_value and schema.tags[name] != value):
            return False
    return True


def _readable_group(state: ServerState, key: ApiKey, group: str) -> FeatureGroupSchema:
    """The group when the key may read one of its features; else the not-found answer."""
    schema = visible_group(state.store.registry, key, group)
    if not any(key.can(Access.READ, schema.name, f) for f in schema.feature_names):
        raise hidden_group(group)
    return schema


DEFINITIONS = ("aggregations", "composites", "checks", "source", "event_source")


def _readable_schema(schema: FeatureGroupSchema, key: ApiKey) -> dict[str, Any]:
    """The schema as the key may see it: only readable features; the definitions that derive
    or check features (aggregations, composites, checks, sources) only with every feature."""
    out = schema.to_dict()
    readable = [f for f in out.get("features", []) if key.can(Access.READ, schema.name, f["name"])]
    if len(readable) < len(schema.feature_names):
        out["features"] = readable
        for name in DEFINITIONS:
            out.pop(name, None)
    return out


@router.get("/features/{group}", response_model=GroupDescription, tags=["groups"])
def describe(group: GroupPath, state: State, key: Key) -> JSONResponse:
    """Schema, versions, write state (rows, Delta version, last update) and freshness."""
    schema = _readable_group(state, key, group)
    registry = state.store.registry
    group_state = registry.group_state(schema.name, schema.version)
    now = datetime.now(UTC).replace(tzinfo=None)
    last = group_state.last_updated
    age = (now - last).total_seconds() if last is not None else None
    sla = schema.freshness.total_seconds() if schema.freshness is not None else None
    history = statistics_history(registry, schema.name, schema.version)
    latest = list(history.values())[-1] if history else None
    reads_all = all(key.can(Access.READ, schema.name, f) for f in schema.feature_names)
    body = {
        "group": schema.name,
        "version": schema.version,
        "versions": registry.versions(schema.name),
        "schema": _readable_schema(schema, key),
        "state": {
            "last_updated": last,
            "delta_version": group_state.delta_version,
            "row_count": group_state.row_count,
            "writes": group_state.writes,
            "last_mode": group_state.last_mode,
            "lineage": group_state.lineage[-5:] if reads_all else [],
        },
        "freshness": {
            "age_seconds": age,
            "sla_seconds": sla,
            "fresh": None if age is None or sla is None else age <= sla,
            "last_event": latest.last_event if latest is not None else None,
        },
        "statistics": None
        if latest is None
        else {
            "delta_version": latest.delta_version,
            "row_count": latest.row_count,
            "computed_at": latest.computed_at,
            "features": sorted(f for f in latest.features if key.can(Access.READ, schema.name, f)),
        },
        "staged_pending": state.staging.pending(registry, schema.name, schema.version),
        "dead_letters": state.staging.dead_letters.count(schema.name, schema.version),
    }
    return JSONResponse(jsonable(body))


StatsPath = Annotated[
    str,
    Path(
        max_length=2 * MAX_NAME + 12,
        description="`group` or `group@VERSION` (every feature's statistics); or one feature, "
        "`group.feature`, `group@1.feature` or `group.feature.v1` (that feature's statistics).",
        examples=["customer_profile", "customer_profile.age.v1"],
    ),
]


@router.get("/features/{group}/stats", tags=["groups"])
def stats(group: StatsPath, state: State, key: Key) -> JSONResponse:
    """The latest statistics of the group's Gold table (recorded on each write).

    For one feature (`user.purchase_count_7d.v1`): its statistics as `featureId`, `count`
    (rows, nulls included), `nullCount`, `uniqueValues` (approximate), `mean`, `std`, `min`,
    `max`, `lastUpdated`, with the group, version and Delta version they were computed at."""
    if "." in group:
        return _feature_stats(group, state, key)
    schema = _readable_group(state, key, group)
    latest = _latest_statistics(state, schema).to_dict()
    features = {
        name: value
        for name, value in latest.get("features", {}).items()
        if key.can(Access.READ, schema.name, name)
    }
    return JSONResponse(jsonable({**latest, "features": features}))


def _latest_statistics(state: ServerState, schema: FeatureGroupSchema) -> GroupStatistics:
    history = statistics_history(state.store.registry, schema.name, schema.version)
    if not history:
        raise _no_statistics(f"Group '{schema.name}' v{schema.version} has no statistics yet.")
    return list(history.values())[-1]


def _no_statistics(message: str) -> NotFoundError:
    return NotFoundError(
        message,
        code="no_statistics",
        fix="write data to the group (statistics are computed on each Gold write with "
        "quality_on_write: true), or compact the staged records.",
    )


def _feature_stats(text: str, state: ServerState, key: ApiKey) -> JSONResponse:
    """One feature's latest statistics, from the same record as the group's."""
    (ref,) = parse_refs(text)
    if ref.is_wildcard:
        raise SchemaValidationError(
            f"'{text}' names every feature of group '{ref.group}', not one feature.",
            fix=f"GET {API_PREFIX}/features/{ref.group}/stats gives every feature's statistics.",
        )
    schema = _readable_group(state, key, ref.group + (f"@{ref.version}" if ref.version else ""))
    if ref.feature not in schema.feature_names or not key.can(
        Access.READ, schema.name, ref.feature
    ):
        raise hidden_feature(schema.name, ref.feature)
    latest = _latest_statistics(state, schema)
    feature = latest.features.get(ref.feature)
    if feature is None:  # added to the group after its latest statistics
        raise _no_statistics(
            f"Feature '{schema.name}.{ref.feature}' (v{schema.version}) has no statistics yet."
        )
    body = {
        "featureId": f"{schema.name}.{ref.feature}.v{schema.version}",
        "count": feature.count + feature.null_count,
        "nullCount": feature.null_count,
        "uniqueValues": feature.distinct_approx,
        "mean": feature.mean,
        "std": feature.std,
        "min": feature.min,
        "max": feature.max,
        "lastUpdated": latest.last_updated,
        "group": schema.name,
        "version": schema.version,
        "feature": ref.feature,
        "delta_version": latest.delta_version,
        "computed_at": latest.computed_at,
        "last_event": latest.last_event,
        "kind": feature.kind,
        "quantiles": feature.quantiles,
        "top_values": feature.top_values,
    }
    return JSONResponse(jsonable(body))


# -- writes --------------------------------------------------------------------------------------


@router.post("/features/write", response_model=WriteResponse, tags=["writes"])
def write(body: WriteRequest, request: Request, state: State, key: Key) -> WriteResponse:
    """Write one record: validated, staged for Gold, and written to the online store."""
    return _write(state, request, key, body.group, [body.record])


@router.post("/features/write-batch", response_model=WriteResponse, tags=["writes"])
def write_batch(body: WriteBatchRequest, request: Request, state: State, key: Key) -> WriteResponse:
    """Write records of one group; one bad record refuses the whole batch."""
    return _write(state, request, key, body.group, body.records)


def _write(
    state: ServerState,
    request: Request,
    key: ApiKey,
    group: str,
    records: Sequence[Mapping[str, Any]],
) -> WriteResponse:
    audited(request, "write", f"{group} ({len(records)} record(s))")
    key.require_role(Role.WRITER, "writing features")
    store = state.store
    schema = visible_group(store.registry, key, group)
    audited(request, "write", f"{schema.name}@{schema.version} ({len(records)} record(s))")
    # A record replaces the whole row of its key and time (features it omits become null),
    # so writing needs the right to write every feature of the group.
    key.require(Access.WRITE, [(schema.name, f) for f in schema.feature_names])
    typed = state.checker(schema).check(records)
    _refuse_future(schema, typed, state.settings.max_future_seconds)
    staging_version = state.staging.append(
        schema,
        records,
        typed,
        request_id=getattr(request.state, "request_id", None),
        key_id=key.id,
    )
    online_written = online_rejected = 0
    online: Literal["written", "disabled"] = "disabled"
    if store.config.enable_online_store:
        try:
            result = store.online.write_batch(schema, typed)
        except OnlineStoreError as error:
            # Staged already: Gold gets the records at the next compaction either way.
            raise type(error)(
                f"The {len(typed)} record(s) were staged (staging version {staging_version}) "
                f"and reach Gold at the next compaction, but the online store did not take "
                f"them: {error.message}",
                fix="retry the write when the online store answers (staging the records "
                "again is harmless: compaction keeps one per key and time), or sync the group "
                "online after the next compaction.",
            ) from error
        online_written, online_rejected, online = result.written, result.rejected, "written"
    return WriteResponse(
        group=schema.name,
        version=schema.version,
        received=len(records),
        staged=len(typed),
        staging_version=staging_version,
        online=online,
        online_written=online_written,
        online_rejected_older=online_rejected,
    )


def _refuse_future(
    schema: FeatureGroupSchema, typed: Sequence[Mapping[str, Any]], allowance: float
) -> None:
    """EventTimeInFutureError naming the records whose event time is past now + allowance."""
    limit = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=allowance)
    ts = schema.timestamp_key
    late = [(n, row[ts]) for n, row in enumerate(typed) if row[ts] > limit]
    if late:
        shown = "; ".join(f"record {n}: {t.isoformat()}" for n, t in late[:10])
        raise EventTimeInFutureError(
            f"{len(late)} record(s) for group '{schema.name}' have an event time '{ts}' later "
            f"than now plus {allowance:g} s ({limit.isoformat(timespec='seconds')} UTC): "
            f"{shown}. Nothing was written.",
            fix="send the time the values were observed (UTC, or with an offset); the server "
            "setting max_future_seconds is the clock skew allowed.",
            group=schema.name,
        )


# -- reads ---------------------------------------------------------------------------------------


@router.post("/features/serve", response_model=ServeResponse, tags=["serving"])
async def serve(body: ServeRequest, state: State, key: Key) -> Response:
    """The latest values of features (or of a service) for each entity, from the online store."""
    return await state.serving.run(lambda: _serve(body, state, key))


def _serve(body: ServeRequest, state: ServerState, key: ApiKey) -> Response:
    started = time.perf_counter()
    store = state.store
    definition = None
    if body.service is not None:
        try:
            definition = store.services.get(body.service)
        except FeatureNotFoundError:
            raise hidden_service(body.service) from None
        refs = list(definition.features)
        groups = {ref.group for ref in parse_refs(refs)}
        if not any(
            key.can(Access.READ, g.name, f)
            for g in (store.registry.get_group(name) for name in groups)
            for f in g.feature_names
        ):
            raise hidden_service(body.service)
    else:
        refs = list(body.features or [])
        named = {ref.group + (f"@{ref.version}" if ref.version else "") for ref in parse_refs(refs)}
        for group in sorted(named):
            visible_group(store.registry, key, group)
    plan = store.online.plan(refs)
    key.require(Access.READ, [(g.schema.name, f) for g in plan.groups for f in g.features])
    if state.mirror is not None:  # an in-process store: bring in other processes' writes
        state.mirror.refresh_if_due()
        state.mirror.check_loaded([g.schema for g in plan.groups])
    entities: list[Any] = list(body.entities)
    if definition is not None:
        vectors = store.services.get_features(definition, entities)
    else:
        vectors = store.get_online_features(refs, entities)
    assert isinstance(vectors, list)
    out = []
    hits = misses = 0
    missing_any: dict[str, None] = {}
    iso: dict[datetime, str] = {}
    for vector in vectors:
        names = vector.names
        values = vector.to_dict()
        times: dict[str, str | None] = {}
        missing = []
        for name in names:
            event = vector.event_time(name)
            if event is None:
                missing.append(name)
                times[name] = None
            else:
                text = iso.get(event)
                if text is None:
                    text = iso[event] = event.isoformat()
                times[name] = text
            values[name] = json_value(values[name])
        misses += len(missing)
        hits += len(names) - len(missing)
        if missing:
            missing_any.update(dict.fromkeys(missing))
        out.append(
            {
                "entity": {k: json_value(v) for k, v in vector.entity.items()},
                "values": values,
                "event_times": times,
                "missing": missing,
            }
        )
    state.metrics.cache(hits, misses)
    return FastJSONResponse(
        {
            "features": list(plan.names),
            "vectors": out,
            "metadata": {
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "cache_hits": hits,
                "cache_misses": misses,
                "missing_features": list(missing_any),
                "source": vectors[0].source if vectors else "online",
                "service": body.service,
            },
        }
    )


@router.post("/features/historical", response_model=HistoricalResponse, tags=["serving"])
async def historical(body: HistoricalRequest, request: Request, state: State, key: Key) -> Response:
    """Aggregates (latest, avg, sum, min, max, count) per entity over a time range or windows.

    Runs on the server's offline threads: 503 `server_busy` when they and their queue are
    full, 504 `offline_timeout` past the time limit (both with `Retry-After`). An answer over
    a page (`historical_page_cells` values, or `page_size` rows) comes in pages of
    consecutive entities: repeat the request with `page_token` set to `next_page_token`."""
    tag = f"featurelake-historical-{getattr(request.state, 'request_id', 'x')}"
    session = state.store.spark_session

    def interrupt() -> None:
        if session is not None:
            with suppress(Exception):  # best effort: the answer is 504 either way
                session.interruptTag(tag)

    return await state.offline.run(lambda: _historical(body, state, key, tag), interrupt)


def _historical(body: HistoricalRequest, state: ServerState, key: ApiKey, tag: str) -> Response:
    refs = parse_refs(body.features)
    names = sorted({r.group for r in refs})
    versions = sorted({r.version for r in refs if r.version is not None})
    if len(names) != 1 or len(versions) > 1:
        raise SchemaValidationError(
            f"A historical request reads one version of one group; this one names {names}"
            + (f" at versions {versions}." if len(versions) > 1 else "."),
            fix="send one request per group version.",
        )
    name, version = names[0], (versions[0] if versions else None)
    schema = _readable_group(state, key, name + (f"@{version}" if version else ""))
    features: list[str] = []
    for ref in refs:
        wanted = schema.feature_names if ref.is_wildcard else (schema.feature(ref.feature).name,)
        features.extend(f for f in wanted if f not in features)
    key.require(Access.READ, [(schema.name, f) for f in features])
    query = build_query(
        schema,
        features,
        list(body.entities),
        body.start,
        body.end,
        body.aggregations,
        body.window,
    )
    check_size(query, state.settings.max_historical_cells)
    one = replace(query, entities=[None])
    page = page_of(
        query.entities,
        cells_per_entity=estimated_cells(one),
        rows_per_entity=estimated_cells(one) // len(query.columns),
        page_cells=state.settings.historical_page_cells,
        page_size=body.page_size,
        token=body.page_token,
        digest=request_digest(body.model_dump(mode="json")),
    )
    query = replace(query, entities=page.entities)
    session = state.store.spark_session
    if session is not None:
        session.addTag(tag)
    _lower_own_driver(state)
    try:
        table, metadata = run_query(state.store, query, body.engine)
    finally:
        if session is not None:
            session.removeTag(tag)
    _lower_own_driver(state)  # a driver this read started
    metadata["page"] = {
        "entity_offset": page.offset,
        "entities": len(page.entities),
        "total_entities": page.total,
    }
    chunks = answer_chunks(
        {"group": schema.name, "version": schema.version},
        table,
        list(schema.entity_keys),
        query.columns,
        {"metadata": jsonable(metadata), "next_page_token": page.next_token},
    )
    return StreamingResponse(chunks, media_type="application/json")


def _lower_own_driver(state: ServerState) -> None:
    """Offline work yields the processor to online reads (`priority.py`), on a Spark driver the
    store started; a session given to the store is the caller's, and keeps its priority."""
    if state.store.context.given_spark is None:
        settings = state.settings
        lower_offline_priority(
            state.store.spark_session, settings.offline_nice, settings.offline_idle
        )


# -- operations ----------------------------------------------------------------------------------


@router.get("/health", response_model=HealthResponse, tags=["operations"])
def health(
    request: Request,
    state: State,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> JSONResponse:
    """Up (200) or down (503). With a valid API key, each part's details too: registry,
    storage, online store (Redis), Spark and the audit queue."""
    from featurelake.server.health import health_checks

    checks = health_checks(state)
    healthy = all(part.get("healthy", True) for part in checks.values())
    body: dict[str, Any] = {"healthy": healthy}
    try:
        authenticate(request, api_key)
    except (AuthenticationError, TooManyRequestsError):
        pass
    else:
        body["checks"] = checks
    return JSONResponse(jsonable(body), status_code=200 if healthy else 503)


@router.get("/metrics", tags=["operations"], response_class=Response)
def metrics(state: State) -> Response:
    """Prometheus text: latency histograms and quantiles, errors, online cache hit ratio."""
    return Response(content=state.metrics.render(), media_type=CONTENT_TYPE)
