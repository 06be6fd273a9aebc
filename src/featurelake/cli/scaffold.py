"""`featurelake init`: the conf/ folder of a new project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featurelake.cli.state import state_of
from featurelake.errors import ConfigurationError

CONFIG_TEMPLATE = """\
# featurelake store configuration.
# Every key can be overridden by an environment variable FEATURELAKE_<KEY>,
# e.g. FEATURELAKE_STORAGE_PATH=s3://bucket/features.
storage_path: ./feature_store     # a folder or URI; Gold tables and the registry live under it
# catalog: main                   # with a database set, Gold tables are catalog tables
# database: features              #   ({catalog}.{database}.{group}_v{version})
mode: MATERIALIZED
max_retries: 5                    # Delta write conflicts are retried with backoff
retry_backoff_ms: 100
retry_backoff_multiplier: 2.0
metadata_cache_ttl_seconds: 30
enable_online_store: false
online_backend: memory            # or: redis (then set online_url: redis://localhost:6379/0)
# Local Spark (ignored on Databricks and under spark-submit, which bring their own session):
spark_master: local[*]
spark_shuffle_partitions: 8
spark_conf:
  spark.driver.memory: 2g
"""

GROUP_TEMPLATE = """\
# An example feature group: edit it, or replace it with your own (one group per file).
# Register every group of this folder with: featurelake apply
name: customer_activity
version: 1
description: Purchase activity of each customer, computed daily.
owner: data-team@example.com
tags: {domain: customer}
entity_keys:
  - {name: customer_id, type: bigint}
timestamp_key: event_timestamp
ttl: 30d          # point-in-time reads ignore values older than this
freshness: 1d     # `featurelake describe` flags the group as stale after this
features:
  - name: orders_7d
    type: bigint
    min: 0
    description: Orders in the last 7 days.
  - name: spend_7d
    type: double
    min: 0
    unit: EUR
    description: Amount spent in the last 7 days.
  - name: favourite_category
    type: string
    feature_type: categorical
    description: Most frequent product category of the last 30 days.
"""


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIRECTORY", help="Project folder; conf/ is created inside it."),
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Create conf/featurelake.yaml and an example feature group in conf/features/."""
    out = state_of(ctx).output(as_json)
    config_file = directory / "conf" / "featurelake.yaml"
    group_file = directory / "conf" / "features" / "customer_activity.yaml"
    existing = [str(p) for p in (config_file, group_file) if p.exists()]
    if existing and not force:
        raise ConfigurationError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}.",
            fix="pass --force to overwrite, or run init in another folder.",
        )
    group_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(CONFIG_TEMPLATE)
    group_file.write_text(GROUP_TEMPLATE)
    created = [str(config_file), str(group_file)]
    if out.as_json:
        out.json({"created": created})
        return
    for path in created:
        out.line(f"created {path}")
    out.line("")
    out.line("Next:")
    out.line(f"  1. set storage_path in {config_file}")
    out.line(f"  2. describe your feature groups in {group_file.parent}/")
    out.line("  3. featurelake apply                  # register them (shows the plan first)")
    out.line("  4. featurelake materialize customer_activity --source PATH_OR_TABLE")
