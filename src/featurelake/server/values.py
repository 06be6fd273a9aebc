"""Routes of single values and runs: a feature value's versions over HTTP, and running a
group's materialization (`/v1/features/materialize`)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, Field, model_validator

from featurelake.errors import ConfigurationError
from featurelake.server.access import hidden_feature, visible_group
from featurelake.server.auth import Access, Role
from featurelake.server.models import Body, GroupName
from featurelake.server.routes import ERRORS, GroupPath, Key, State, audited
from featurelake.server.state import API_PREFIX, jsonable
from featurelake.times import utc_naive

router = APIRouter(prefix=API_PREFIX, responses=ERRORS)


@router.get("/features/{group}/{feature}/history", tags=["serving"])
def value_history(
    group: GroupPath,
    feature: Annotated[str, Path(max_length=128, description="A feature of the group.")],
    state: State,
    key: Key,
    entity: Annotated[str, Query(max_length=512, description="The entity's key value.")],
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> JSONResponse:
    """The kept versions of one online feature value of one entity, newest first (the last
    `online_history_size` writes)."""
    store = state.store
    if not store.config.enable_online_store:
        raise ConfigurationError(
            "Value history is kept by the online store, which this server has disabled.",
            fix="set enable_online_store: true and online_history_size in the store config.",
        )
    schema = visible_group(store.registry, key, group)
    if not key.can(Access.READ, schema.name, feature) or feature not in schema.feature_names:
        raise hidden_feature(schema.name, feature)
    ref = f"{schema.name}@{schema.version}.{feature}"
    values = store.online.get_value_history(ref, entity, limit)
    return JSONResponse(
        jsonable(
            {
                "feature": f"{schema.name}.{feature}",
                "version": schema.version,
                "entity": entity,
                "history_size": store.config.online_history_size,
                "values": [
                    {
                        "version": v.version,
                        "value": v.value,
                        "event_time": v.event_time,
                        "age_seconds": v.age_seconds,
                    }
                    for v in values
                ],
            }
        )
    )


class MaterializeRequest(Body):
    """The group to materialize; `full` recomputes it from its whole source; `start` and `end`
    recompute only the rows of that event-time range."""

    group: GroupName
    full: bool = False
    start: datetime | None = Field(
        default=None,
        description="Inclusive start of the event-time range to recompute (naive means UTC); "
        "with `end`.",
        validation_alias=AliasChoices("start", "start_date", "startTime"),
    )
    end: datetime | None = Field(
        default=None,
        description="Exclusive end of the range; with `start`.",
        validation_alias=AliasChoices("end", "end_date", "endTime"),
    )

    @model_validator(mode="after")
    def _one_kind_of_run(self) -> MaterializeRequest:
        if (self.start is None) != (self.end is None):
            raise ValueError("a time range needs both start and end")
        if self.start is not None and self.end is not None:
            if self.full:
                raise ValueError("send full: true alone, or start and end alone, not both")
            if utc_naive(self.start) >= utc_naive(self.end):
                raise ValueError("start must be before end (start inclusive, end exclusive)")
        return self


@router.post("/features/materialize", tags=["writes"])
def materialize(body: MaterializeRequest, request: Request, state: State, key: Key) -> JSONResponse:
    """Run a group's materialization now (writer or admin): a group with a source (or an
    aggregation group) is brought up to date from it; a virtual group's query result is
    written to its Gold table. Returns what the run did."""
    audited(request, "materialize", body.group)
    key.require_role(Role.WRITER, "materializing feature groups")
    store = state.store
    schema = visible_group(store.registry, key, body.group)
    key.require(Access.WRITE, [(schema.name, f) for f in schema.feature_names])
    audited(request, "materialize", f"{schema.name}@{schema.version}")
    ref = f"{schema.name}@{schema.version}"
    result: dict[str, Any]
    if schema.source is None and schema.event_source is None:
        # a virtual group (or a typed error saying it is none)
        written = store.materialize(ref, start=body.start, end=body.end)
        result = {"kind": "virtual", **asdict(written)}
    else:
        from featurelake.scheduling import materialize_from_source

        run = materialize_from_source(
            store, ref, full=body.full, job="api", start=body.start, end=body.end
        )
        result = {"kind": "source", **run.to_dict()}
    return JSONResponse(jsonable({"group": schema.name, "version": schema.version, **result}))
