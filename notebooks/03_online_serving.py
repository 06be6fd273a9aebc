# Databricks notebook source
# MAGIC %md
# MAGIC # Online serving
# MAGIC
# MAGIC Models in production need the **latest** features of one entity in milliseconds, not a
# MAGIC Spark job. featurelake syncs the newest value per entity from the Gold tables into an
# MAGIC online store — in-process memory, or Redis shared by every serving process — and reads
# MAGIC feature vectors from it. Syncs are incremental: only rows changed since the last sync are
# MAGIC read (Delta Change Data Feed).
# MAGIC
# MAGIC The backend comes from the config: `online_backend: memory` (this process only) or
# MAGIC `online_backend: redis` with `online_url`. Runs on Databricks or locally as
# MAGIC `python notebooks/03_online_serving.py`.

# COMMAND ----------

import os
import time
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.errors import MaterializationError
from featurelake.examples import retail
from featurelake.logs import quiet_engine_logs
from featurelake.pipeline.runtime import load_settings
from featurelake.schema import load_groups
from featurelake.session import get_spark

# COMMAND ----------


def notebook_param(name: str, default: str, env: str) -> str:
    """A Databricks widget value, else the environment variable `env`, else the default."""
    dbutils = globals().get("dbutils")
    if dbutils is not None:
        dbutils.widgets.text(name, default)
        return str(dbutils.widgets.get(name))
    return os.environ.get(env, default)


def find_config() -> Path:
    given = notebook_param("config", "", "FEATURELAKE_CONFIG")
    candidates = [Path(given)] if given else []
    candidates += [Path("conf/featurelake.yaml"), Path("../conf/featurelake.yaml")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"No featurelake config at {', '.join(map(str, candidates))}: set the 'config' widget "
        "or FEATURELAKE_CONFIG (featurelake init writes one)."
    )


def show(frame: Any, rows: int = 20) -> None:
    """Databricks' `display` when there is one, else a plain table."""
    display = globals().get("display")
    if display is not None and "dbutils" in globals():
        display(frame)
    else:
        frame.show(rows, truncate=False)


CONFIG_PATH = find_config()
config: FeatureStoreConfig = load_settings(CONFIG_PATH)
OWN_SESSION = globals().get("spark") is None  # False on Databricks: never stop its session
quiet_engine_logs()  # a failed query shows featurelake's error, not a Java stack
spark = globals().get("spark") or get_spark(config)
store = FeatureStore(config, spark)
CUSTOMERS = int(notebook_param("customers", "200", "FEATURELAKE_NOTEBOOK_CUSTOMERS"))
print(f"config {CONFIG_PATH} -> store {config.storage_path}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Feature data
# MAGIC Register the groups and, where a group has no data yet, write the example batches.

# COMMAND ----------

examples = {
    "customer_profile": lambda: retail.customer_profiles(spark, customers=CUSTOMERS, snapshots=3),
    "transaction_aggregates": lambda: retail.transaction_aggregates(
        spark, customers=CUSTOMERS, days=30
    ),
}
for group in load_groups(CONFIG_PATH.parent / "features"):
    store.register_features(group)
    try:
        rows = store.read_table(group.name).count()
    except MaterializationError:  # no data yet
        rows = store.write_features(group.name, examples[group.name](), mode="merge").row_count
    print(f"{group.name} v{group.version}: {rows} rows")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Sync the latest values online
# MAGIC The first sync reads the whole table (`full`); later ones only the changes.

# COMMAND ----------

features = FeatureStore(config.replace(enable_online_store=True), spark)
for name in examples:
    synced = features.sync_to_online(name)
    print(
        f"synced {synced.group} v{synced.version} ({synced.mode}) to {synced.target}: "
        f"{synced.rows_written} entities, Delta versions {synced.from_version}..{synced.to_version}"
    )

# COMMAND ----------

# MAGIC %md
# MAGIC ## Look up feature vectors
# MAGIC One vector per entity, in the order of the refs; each value knows its event time.

# COMMAND ----------

refs = [
    "customer_profile.segment",
    "customer_profile.lifetime_value",
    "transaction_aggregates.txn_count_7d",
]
vectors = features.get_online_features(refs, [1, 2, 3])
for vector in vectors:
    print(
        f"customer {vector.entity['customer_id']}: {vector.to_dict()} "
        f"(segment as of {vector.event_time('segment')})"
    )

lookups = 200
started = time.perf_counter()
for customer in range(1, lookups + 1):
    features.get_online_features(refs, [customer])
per_lookup_ms = (time.perf_counter() - started) / lookups * 1000
print(f"{lookups} single-customer lookups: {per_lookup_ms:.2f} ms each")

frame = features.get_online_features(refs, list(range(1, 21)), as_frame=True)
show(spark.createDataFrame(frame), rows=5)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Online equals offline
# MAGIC The online values are the latest values of the Gold tables.

# COMMAND ----------

offline = store.get_features(refs, entity_ids=list(range(1, 21))).toPandas()
columns = ["customer_id", "segment", "lifetime_value", "txn_count_7d"]
online_rows = frame[columns].sort_values("customer_id").reset_index(drop=True)
offline_rows = offline[columns].sort_values("customer_id").reset_index(drop=True)
same = online_rows.astype(str).equals(offline_rows.astype(str))
print(f"online equals offline for {len(online_rows)} customers: {same}")
assert same

# COMMAND ----------

# MAGIC %md
# MAGIC ## A new snapshot arrives: incremental sync
# MAGIC Five customers get a newer profile. The next sync reads only the changed rows.

# COMMAND ----------

newer = (
    retail.customer_profiles(spark, customers=5, snapshots=4, seed=101)
    .where(F.col("event_timestamp") == F.lit("2024-03-31"))
    .withColumn("segment", F.lit("platinum"))
)
store.write_features("customer_profile", newer, mode="merge")
synced = features.sync_to_online("customer_profile")
print(f"incremental sync ({synced.mode}): {synced.rows_written} rows")
after = features.get_online_features(["customer_profile.segment"], [1, 2, 3, 4, 5])
print(f"segments now: {[vector.get('segment') for vector in after]}")
features.close()

# COMMAND ----------

if OWN_SESSION:  # a local run started its own Spark: end it cleanly before exiting
    spark.stop()
