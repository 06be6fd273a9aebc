"""Feature quality: statistics, rules checked on write and on demand, drift, reports."""

from featurelake.quality.checks import (
    CheckReport,
    QualityCheckError,
    QualityGate,
    RuleResult,
    check_history,
    evaluate_checks,
    quarantined_rows,
)
from featurelake.quality.drift import (
    DriftReport,
    FeatureDrift,
    compute_drift,
    drift,
    drift_history,
    psi,
)
from featurelake.quality.monitor import (
    QualityAttachable,
    attach_configured_quality,
    attach_quality,
    check,
    statistics,
)
from featurelake.quality.stats import (
    FeatureStatistics,
    GroupStatistics,
    compute_statistics,
    statistics_history,
)

__all__ = [
    "CheckReport",
    "DriftReport",
    "FeatureDrift",
    "FeatureStatistics",
    "GroupStatistics",
    "QualityAttachable",
    "QualityCheckError",
    "QualityGate",
    "RuleResult",
    "attach_configured_quality",
    "attach_quality",
    "check",
    "check_history",
    "compute_drift",
    "compute_statistics",
    "drift",
    "drift_history",
    "evaluate_checks",
    "psi",
    "quarantined_rows",
    "statistics",
    "statistics_history",
]
