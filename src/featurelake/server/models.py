"""Request and response bodies of the HTTP API (pydantic), with their size limits.

Lists are capped (entities, features, records) so one request cannot ask for unbounded work;
the whole body is also capped in bytes before it is parsed (`ServerSettings.max_body_bytes`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    model_validator,
)

from featurelake.server.errors import ForeignShapeError

MAX_ENTITIES = 1_000
MAX_FEATURES = 200
MAX_BATCH_ROWS = 5_000
MAX_HISTORICAL_ENTITIES = 10_000
MAX_NAME = 128
MAX_KEY_TEXT = 512

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
GroupName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_NAME,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(@[0-9]{1,9})?$",
        description="`group` (latest version) or `group@2`.",
    ),
]
FeatureRefText = Annotated[
    str,
    Field(
        min_length=3,
        max_length=2 * MAX_NAME + 12,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(@[0-9]{1,9})?\.(\*|[A-Za-z_][A-Za-z0-9_]*)"
        r"(\.v[0-9]{1,9})?$",
        description="`group.feature`, `group.*` or `group@2.feature` (`group.feature.v2` is "
        "read as `group@2.feature`).",
    ),
]
KeyValue = Annotated[StrictInt | Annotated[StrictStr, Field(max_length=MAX_KEY_TEXT)], Field()]
Entity = Annotated[
    KeyValue | Annotated[dict[Name, KeyValue], Field(min_length=1, max_length=16)],
    Field(description="One key value (single-key groups) or an object {key: value}."),
]
Record = Annotated[dict[str, Any], Field(max_length=1_000)]


def refuse_value_writes(data: Any, ours: str) -> Any:
    """A write of single feature values (`featureId`, `entityId`, `value`, or `values` of
    them) is refused with the record shape to send: a record replaces the whole row of its
    key and time, so one value alone would null the group's other features."""
    if not isinstance(data, dict):
        return data
    single = {"featureId", "entityId", "value"} & set(data)
    listed = "values" in data and ours == "records"
    if single or listed:
        raise ValueError(
            "featurelake writes whole records of a group, not single feature values "
            f"({', '.join(sorted(single) or ['values'])}): send "
            '{"group": "user@1", "'
            + ours
            + '": '
            + ("[" if ours == "records" else "")
            + '{"user_id": "user123", "event_timestamp": "2025-11-07T10:00:00Z", '
            '"purchase_count_7d": 5, ...every feature of the group}'
            + ("]" if ours == "records" else "")
            + "}"
        )
    return data


JSON_VALUE_TYPES = {
    "number": "double",
    "integer": "bigint",
    "string": "string",
    "boolean": "boolean",
    "array": "array<double>",
    "object": "map<string,string>",
}
"""JSON value type names (a one-feature registration's `valueType`) as featurelake types."""


def refuse_feature_registration(data: Any) -> Any:
    """A registration of one feature (`name`, `valueType`, `entity`, `version`, ...) is
    refused with the group body that holds it: a feature lives in a group with entity keys and
    an event time, and taken as a group body its `name` (the feature's) would name the group.

    The error is a featurelake error, not a ValueError: pydantic lets it through, and the
    server answers it with its own code (422 `foreign_shape`), not `invalid_request`."""
    if not isinstance(data, dict) or "entity_keys" in data or "features" in data:
        return data
    foreign = sorted({"valueType", "entity"} & set(data))
    if not foreign:
        return data
    entity = _identifier(data.get("entity"), "my_entity")[: MAX_NAME - 3]  # room for "_id"
    feature: dict[str, Any] = {"name": _identifier(data.get("name"), "my_feature")}
    value_type = data.get("valueType")
    if isinstance(value_type, str) and value_type.strip():
        name = value_type.strip()[:64]
        feature["type"] = JSON_VALUE_TYPES.get(name.lower(), name)
    else:
        feature["type"] = "double"
    if isinstance(data.get("description"), str) and data["description"]:
        feature["description"] = data["description"][:512]
    tags = data.get("tags")
    if isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags):
        feature["tags"] = [t[:MAX_NAME] for t in tags[:16]]
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 1_000_000:
        version = 1
    group = {
        "name": entity,
        "version": version,
        "entity_keys": [f"{entity}_id"],
        "timestamp_key": "event_timestamp",
        "features": [feature],
    }
    raise ForeignShapeError(
        "POST /v1/features/register registers a feature group, not one feature "
        f"({', '.join(foreign)} are not group fields): a feature lives in a group with entity "
        "keys and an event time. Send this group body: " + json.dumps(group),
        fix=f"send that body, with the entity's other features in 'features' and, in "
        f"'entity_keys', the key column your records carry; the feature is then read as "
        f"'{entity}.{feature['name']}.v{version}' ('{entity}@{version}.{feature['name']}').",
    )


def _identifier(value: Any, default: str) -> str:
    """`value` as a featurelake name (letters, digits, underscores), or `default`."""
    if not isinstance(value, str):
        return default
    text = re.sub(r"[^A-Za-z0-9_]", "_", value.strip())[:MAX_NAME]
    if not text.strip("_"):
        return default
    return text if not text[0].isdigit() else f"_{text}"[:MAX_NAME]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def examples(*bodies: dict[str, Any]) -> ConfigDict:
    """A request body's config with its examples for the API page (its subclassing of `Body`
    still refuses unknown keys)."""
    return ConfigDict(json_schema_extra={"examples": list(bodies)})


# -- errors --------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `feature_forbidden`.")
    message: str
    fix: str | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# -- serve ---------------------------------------------------------------------------------------


class ServeRequest(Body):
    """Feature references or a feature service, and the entities to read."""

    model_config = examples(
        {
            "features": ["customer_profile.age", "customer_profile.segment"],
            "entities": [1, 2],
        },
        {"features": ["customer_profile.*"], "entities": [{"customer_id": 1}]},
    )

    features: (
        Annotated[list[FeatureRefText], Field(min_length=1, max_length=MAX_FEATURES)] | None
    ) = None
    service: Name | None = None
    entities: Annotated[list[Entity], Field(min_length=1, max_length=MAX_ENTITIES)] = Field(
        validation_alias=AliasChoices("entities", "entityIds")
    )

    @model_validator(mode="after")
    def _one_source(self) -> ServeRequest:
        if (self.features is None) == (self.service is None):
            raise ValueError("give either 'features' or 'service', not both or neither")
        return self


class ServedVector(BaseModel):
    entity: dict[str, Any]
    values: dict[str, Any]
    event_times: dict[str, datetime | None] = Field(
        description="Event time of each value (null where the feature was not found)."
    )
    missing: list[str] = Field(description="Features with no value online for this entity.")


class ServeMetadata(BaseModel):
    latency_ms: float
    cache_hits: int = Field(description="Feature values found in the online store.")
    cache_misses: int = Field(description="Feature values not found (null or default).")
    missing_features: list[str] = Field(description="Features missing for at least one entity.")
    source: str
    service: str | None = None


class ServeResponse(BaseModel):
    features: list[str]
    vectors: list[ServedVector]
    metadata: ServeMetadata


# -- writes --------------------------------------------------------------------------------------


EXAMPLE_RECORD: dict[str, JsonValue] = {
    "customer_id": 1,
    "event_timestamp": "2024-03-01T12:00:00Z",
    "age": 41,
    "segment": "gold",
    "lifetime_value": 1250.5,
}


class WriteRequest(Body):
    """One record of a group: entity keys, event time (ISO-8601) and feature values."""

    model_config = examples({"group": "customer_profile", "record": EXAMPLE_RECORD})

    group: GroupName
    record: Record

    @model_validator(mode="before")
    @classmethod
    def _one_value_write(cls, data: Any) -> Any:
        return refuse_value_writes(data, "record")


class WriteBatchRequest(Body):
    """Records of one group."""

    model_config = examples(
        {
            "group": "customer_profile@1",
            "records": [EXAMPLE_RECORD, {**EXAMPLE_RECORD, "customer_id": 2, "age": 35}],
        }
    )

    group: GroupName
    records: Annotated[list[Record], Field(min_length=1, max_length=MAX_BATCH_ROWS)]

    @model_validator(mode="before")
    @classmethod
    def _one_value_writes(cls, data: Any) -> Any:
        return refuse_value_writes(data, "records")


class WriteResponse(BaseModel):
    group: str
    version: int
    received: int
    staged: int
    staging_version: int
    online: Literal["written", "disabled"]
    online_written: int
    online_rejected_older: int


# -- historical ----------------------------------------------------------------------------------

Aggregation = Literal["latest", "avg", "sum", "min", "max", "count"]


class HistoricalRequest(Body):
    """Aggregations of features of one group over a time range, per entity (and window)."""

    model_config = examples(
        {
            "features": ["customer_profile.age", "customer_profile.lifetime_value"],
            "entities": [1, 2],
            "start": "2024-01-01T00:00:00Z",
            "end": "2024-04-01T00:00:00Z",
            "aggregations": ["latest", "avg", "max"],
            "window": "30d",
        }
    )

    features: Annotated[list[FeatureRefText], Field(min_length=1, max_length=MAX_FEATURES)]
    entities: Annotated[list[Entity], Field(min_length=1, max_length=MAX_HISTORICAL_ENTITIES)] = (
        Field(validation_alias=AliasChoices("entities", "entityIds"))
    )
    start: datetime = Field(
        description="Inclusive start of the range (naive means UTC).",
        validation_alias=AliasChoices("start", "startTime"),
    )
    end: datetime = Field(
        description="Exclusive end of the range.",
        validation_alias=AliasChoices("end", "endTime"),
    )
    aggregations: Annotated[list[Aggregation], Field(min_length=1, max_length=6)] = ["latest"]
    window: Annotated[str, Field(max_length=32)] | None = Field(
        default=None,
        description="Tumbling window length such as `1h` or `7d` (aligned to the Unix epoch); "
        "without it, one row per entity over the whole range.",
    )
    engine: Literal["auto", "spark", "duckdb"] = Field(
        default="auto",
        description="`auto`: DuckDB for small reads (estimated from Delta statistics), else "
        "Spark; or force one.",
    )
    page_size: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None,
        description="At most this many rows (entity x window) per page; the server's "
        "`historical_page_cells` bounds a page too. Pages are consecutive slices of "
        "`entities` (repeats removed), in the order sent.",
    )
    page_token: Annotated[str, Field(max_length=256)] | None = Field(
        default=None,
        description="The `next_page_token` of the previous page, sent with the same body; "
        "leave it out for the first page.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_aggregation(cls, data: Any) -> Any:
        """`aggregation: "avg"` (one) is `aggregations: ["avg"]`."""
        if isinstance(data, dict) and "aggregation" in data:
            if "aggregations" in data:
                raise ValueError("give 'aggregations' (a list) or 'aggregation', not both")
            one = data["aggregation"]
            data = {k: v for k, v in data.items() if k != "aggregation"}
            data["aggregations"] = [one]
        return data


class HistoricalRow(BaseModel):
    entity: dict[str, Any]
    window_start: datetime
    window_end: datetime
    values: dict[str, Any] = Field(description="`feature__aggregation` -> value.")


class HistoricalResponse(BaseModel):
    group: str
    version: int
    rows: list[HistoricalRow]
    metadata: dict[str, Any]
    next_page_token: str | None = Field(
        default=None,
        description="Set when more entities remain: send the same body with it as `page_token`.",
    )


# -- registry ------------------------------------------------------------------------------------


class FeatureBody(Body):
    name: Name
    type: Annotated[str, Field(min_length=1, max_length=512)]
    feature_type: str | None = None
    description: Annotated[str, Field(max_length=4096)] = ""
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    unit: Annotated[str, Field(max_length=64)] | None = None
    allowed_values: (
        Annotated[list[StrictStr | StrictInt | float | bool], Field(max_length=1000)] | None
    ) = None
    metadata: dict[str, Any] | None = None
    tags: (
        Annotated[list[Annotated[str, Field(max_length=MAX_NAME)]], Field(max_length=64)] | None
    ) = None


class GroupBody(Body):
    """A feature group schema, as in `conf/features/*.yaml`."""

    model_config = examples(
        {
            "name": "customer_profile",
            "version": 1,
            "entity_keys": ["customer_id"],
            "entity_key_types": {"customer_id": "bigint"},
            "timestamp_key": "event_timestamp",
            "ttl": "365d",
            "features": [
                {"name": "age", "type": "int", "min": 18, "max": 110},
                {
                    "name": "segment",
                    "type": "string",
                    "allowed_values": ["bronze", "silver", "gold", "platinum"],
                },
                {"name": "lifetime_value", "type": "double", "min": 0},
            ],
        }
    )

    name: Name
    version: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    entity_keys: Annotated[list[Name], Field(min_length=1, max_length=16)]
    timestamp_key: Name = "event_timestamp"
    features: Annotated[list[FeatureBody], Field(max_length=1000)] = Field(
        default_factory=list,
        description="The features; an aggregation group may derive them from `aggregations`.",
    )
    description: Annotated[str, Field(max_length=4096)] = ""
    owner: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    tags: (
        dict[Annotated[str, Field(max_length=MAX_NAME)], Annotated[str, Field(max_length=512)]]
        | None
    ) = None
    ttl: Annotated[str, Field(max_length=32)] | None = None
    freshness: Annotated[str, Field(max_length=32)] | None = None
    partition_columns: Annotated[list[Name], Field(max_length=8)] | None = None
    entity_key_types: dict[Name, Annotated[str, Field(max_length=64)]] | None = None
    checks: dict[str, Any] | None = None
    materialization_schedule: Annotated[str, Field(max_length=128)] | None = None
    source: dict[str, Any] | None = None
    event_source: str | dict[str, Any] | None = None
    aggregations: Annotated[list[dict[str, Any]], Field(max_length=1000)] | None = None
    composites: Annotated[list[dict[str, Any]], Field(max_length=1000)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_feature(cls, data: Any) -> Any:
        return refuse_feature_registration(data)


class RegisterResponse(BaseModel):
    group: str
    version: int
    action: str = Field(description="`created`, `unchanged` or `updated` (compatible change).")


class GroupSummary(BaseModel):
    name: str
    version: int
    versions: list[int]
    entity_keys: list[str]
    features: list[str]
    description: str
    owner: str | None
    tags: dict[str, str]


class GroupList(BaseModel):
    groups: list[GroupSummary]
    total: int
    offset: int
    limit: int


class GroupDescription(BaseModel):
    group: str
    version: int
    versions: list[int]
    schema_: dict[str, Any] = Field(alias="schema")
    state: dict[str, Any]
    freshness: dict[str, Any]
    statistics: dict[str, Any] | None = Field(
        default=None, description="The latest statistics' summary (full: `/stats`)."
    )
    staged_pending: int | None = None
    dead_letters: int | None = Field(
        default=None, description="Staged records compaction could not merge (see the CLI)."
    )

    model_config = ConfigDict(populate_by_name=True)


class HealthResponse(BaseModel):
    healthy: bool
    checks: dict[str, Any] | None = Field(
        default=None, description="Each part's state; only with a valid API key."
    )
