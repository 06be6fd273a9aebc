"""Feature group schemas: types, validation, YAML loading, evolution rules. No Spark needed."""

from featurelake.schema.aggregations import (
    AGGREGATION_FUNCTIONS,
    Aggregation,
    AggregationSource,
    CompositeFeature,
)
from featurelake.schema.durations import format_duration, parse_duration
from featurelake.schema.evolution import SchemaChange, classify_change
from featurelake.schema.keys import INGESTED_AT
from featurelake.schema.loading import load_group_file, load_groups
from featurelake.schema.model import FeatureGroupSchema, FeatureSchema
from featurelake.schema.refs import FeatureRef, parse_refs
from featurelake.schema.types import DataType, FeatureType, SqlType, is_safe_cast

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "INGESTED_AT",
    "Aggregation",
    "AggregationSource",
    "CompositeFeature",
    "DataType",
    "FeatureGroupSchema",
    "FeatureRef",
    "FeatureSchema",
    "FeatureType",
    "SchemaChange",
    "SqlType",
    "classify_change",
    "format_duration",
    "is_safe_cast",
    "load_group_file",
    "load_groups",
    "parse_duration",
    "parse_refs",
]
