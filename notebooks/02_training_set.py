# Databricks notebook source
# MAGIC %md
# MAGIC # Training set with a point-in-time join
# MAGIC
# MAGIC A churn model learns from labelled events: *customer X, observed at time t, churned or
# MAGIC not*. Each feature must be the value known **at t** — a value written later leaks the
# MAGIC future into training. featurelake joins every label row to the latest feature event at or
# MAGIC before its own time (within each group's ttl), reads every Gold table at one Delta version,
# MAGIC and keeps a manifest so the set can be rebuilt exactly.
# MAGIC
# MAGIC Runs on Databricks with the cluster's `spark`, or locally as
# MAGIC `python notebooks/02_training_set.py`. If the groups have no data yet, it writes the
# MAGIC example data first (as `01_quickstart` does).

# COMMAND ----------

import os
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
# MAGIC ## Labels: entity keys, an observation time, the target
# MAGIC In practice these come from your own tables (`spark.read.table(...)`) or a pandas frame.

# COMMAND ----------

labels = retail.label_events(spark, customers=CUSTOMERS, rows=500)
show(labels.orderBy("customer_id", "event_timestamp"), rows=5)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Build the training set
# MAGIC `name=` keeps the manifest (the Delta version of each table read) and the label rows in
# MAGIC the store, so `store.rebuild(name)` gives the same rows later — even after new writes.

# COMMAND ----------

refs = [
    "customer_profile.age",
    "customer_profile.segment",
    "customer_profile.lifetime_value",
    "transaction_aggregates.txn_count_7d",
    "transaction_aggregates.txn_amount_7d",
    "transaction_aggregates.days_since_last_order",
]
training = store.get_training_set(labels, refs, name="churn_notebook")
frame = training.df.cache()
print(f"training set: {frame.count()} rows, columns {frame.columns}")
for table in training.manifest.tables:
    print(f"read {table.group} v{table.group_version} at Delta version {table.delta_version}")
show(frame.orderBy("customer_id", "event_timestamp"), rows=10)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Check: no feature comes from the future
# MAGIC For every row, the profile snapshot used must be the latest one at or before the label
# MAGIC time. We recompute that by hand for each row and compare.

# COMMAND ----------

profiles = store.read_table("customer_profile").select(
    "customer_id", F.col("event_timestamp").alias("profile_time"), "age"
)
by_hand = (
    labels.join(profiles, "customer_id")
    .where(F.col("profile_time") <= F.col("event_timestamp"))
    .groupBy("customer_id", "event_timestamp")
    .agg(F.max_by("age", "profile_time").alias("expected_age"))
)
compared = frame.join(by_hand, ["customer_id", "event_timestamp"], "left")
mismatches = compared.where(~F.col("age").eqNullSafe(F.col("expected_age"))).count()
print(f"point-in-time check: {mismatches} mismatching rows")
assert mismatches == 0

# COMMAND ----------

# MAGIC %md
# MAGIC ## Rebuild it exactly
# MAGIC A new batch lands in `transaction_aggregates`; the rebuilt set still reads the versions
# MAGIC the manifest recorded, so it equals the original.

# COMMAND ----------

late = retail.transaction_aggregates(spark, customers=CUSTOMERS, days=30, seed=99)
store.write_features("transaction_aggregates", late, mode="merge")
rebuilt = store.rebuild("churn_notebook").df
key = ["customer_id", "event_timestamp", "churned"]
same = rebuilt.select(*frame.columns).exceptAll(frame).count() == 0 and (
    frame.exceptAll(rebuilt.select(*frame.columns)).count() == 0
)
print(f"rebuilt after a new write: identical = {same}")
assert same

# COMMAND ----------

# MAGIC %md
# MAGIC ## Hand it to your model
# MAGIC `toPandas()` for scikit-learn and friends, or keep it in Spark for MLlib.

# COMMAND ----------

sample = frame.orderBy(*key).limit(1000).toPandas()
print(f"pandas training frame: {sample.shape[0]} rows x {sample.shape[1]} columns")
print(sample.groupby("churned")[["txn_count_7d", "lifetime_value"]].mean().round(2))

# COMMAND ----------

if OWN_SESSION:  # a local run started its own Spark: end it cleanly before exiting
    spark.stop()
