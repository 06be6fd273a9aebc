"""Serving: the `FeatureStore` facade, feature services, request-time transforms, vectors."""

from featurelake.online import FeatureValue, FeatureVector
from featurelake.serving.service import (
    SERVICE_KIND,
    FeatureService,
    IngestResult,
    ServiceDefinition,
)
from featurelake.serving.store import FeatureStore
from featurelake.serving.transforms import (
    FeatureTransform,
    TransformError,
    register_transform,
    registered_transforms,
)

__all__ = [
    "SERVICE_KIND",
    "FeatureService",
    "FeatureStore",
    "FeatureTransform",
    "FeatureValue",
    "FeatureVector",
    "IngestResult",
    "ServiceDefinition",
    "TransformError",
    "register_transform",
    "registered_transforms",
]
