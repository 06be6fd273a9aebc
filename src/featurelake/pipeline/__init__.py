"""Where pipelines meet featurelake: DAG nodes, and the tasks the CLI and jobs run."""

from featurelake.pipeline.nodes import (
    StoreHandle,
    read_features_node,
    training_set_node,
    write_features_node,
)
from featurelake.pipeline.runtime import exit_code, load_settings, one_line, session_for
from featurelake.pipeline.sources import parse_time, read_source, write_output
from featurelake.pipeline.tasks import (
    TrainingSetOutput,
    materialize,
    training_set,
    write_summary,
)

__all__ = [
    "StoreHandle",
    "TrainingSetOutput",
    "exit_code",
    "load_settings",
    "materialize",
    "one_line",
    "parse_time",
    "read_features_node",
    "read_source",
    "session_for",
    "training_set",
    "training_set_node",
    "write_features_node",
    "write_output",
    "write_summary",
]
