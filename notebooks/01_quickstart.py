# Databricks notebook source
# MAGIC %md
# MAGIC # featurelake quickstart
# MAGIC
# MAGIC Register feature groups declared in YAML, materialize them into versioned Gold Delta
# MAGIC tables, and read the latest features back.
# MAGIC
# MAGIC * On **Databricks** this notebook uses the cluster's `spark` session. Install the package
# MAGIC   on the cluster (or `%pip install featurelake` in a cell) and point the `config` widget at
# MAGIC   your `conf/featurelake.yaml` (e.g. a Unity Catalog `catalog`/`database`, or a
# MAGIC   `storage_path` on cloud storage).
# MAGIC * **Locally** it runs as a plain script (`python notebooks/01_quickstart.py`) and starts a
# MAGIC   local Delta-enabled Spark session. `FEATURELAKE_<KEY>` environment variables override the
# MAGIC   config (e.g. `FEATURELAKE_STORAGE_PATH=/tmp/my_store`).

# COMMAND ----------

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.examples import retail
from featurelake.logs import quiet_engine_logs
from featurelake.pipeline.runtime import load_settings
from featurelake.schema import load_groups
from featurelake.session import get_spark

# COMMAND ----------

# MAGIC %md
# MAGIC ## Configuration and session
# MAGIC The config is looked up in the `config` widget, then `$FEATURELAKE_CONFIG`, then
# MAGIC `conf/featurelake.yaml` under the working folder or its parent (a Databricks Repo runs
# MAGIC notebooks from `notebooks/`). Feature groups are read from `features/` beside it.

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


CONFIG_PATH = find_config()
config: FeatureStoreConfig = load_settings(CONFIG_PATH)
OWN_SESSION = globals().get("spark") is None  # False on Databricks: never stop its session
quiet_engine_logs()  # a failed query shows featurelake's error, not a Java stack
spark = globals().get("spark") or get_spark(config)
store = FeatureStore(config, spark)
print(f"config {CONFIG_PATH} -> store {config.storage_path}; Spark {spark.version}")


def show(frame: Any, rows: int = 20) -> None:
    """Databricks' `display` when there is one, else a plain table."""
    display = globals().get("display")
    if display is not None and "dbutils" in globals():
        display(frame)
    else:
        frame.show(rows, truncate=False)


# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. Register the feature groups
# MAGIC Each YAML file in `conf/features/` declares one group: entity keys, event time, features
# MAGIC with types and limits, a ttl. Registering again is a no-op; a compatible change (a new
# MAGIC nullable feature) updates the group in place; anything else needs a new version.

# COMMAND ----------

for group in load_groups(CONFIG_PATH.parent / "features"):
    registered = store.register_features(group)
    print(f"registered {registered.group} v{registered.version}: {registered.action}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 2. Materialize features
# MAGIC The example retail data stands in for your upstream tables. `merge` upserts on entity keys
# MAGIC and event time, so running this cell again changes nothing. Every batch is validated
# MAGIC against the schema first: a bad batch raises an error naming the column and rows, and the
# MAGIC table stays as it was.

# COMMAND ----------

CUSTOMERS = int(notebook_param("customers", "200", "FEATURELAKE_NOTEBOOK_CUSTOMERS"))
batches = {
    "customer_profile": retail.customer_profiles(spark, customers=CUSTOMERS, snapshots=3),
    "transaction_aggregates": retail.transaction_aggregates(spark, customers=CUSTOMERS, days=30),
}
for name, batch in batches.items():
    written = store.write_features(name, batch, mode="merge")
    print(
        f"wrote {name}: {written.rows_written} rows (Delta version {written.delta_version}), "
        f"{written.row_count} rows in {written.table}"
    )

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. Read features
# MAGIC Latest value per entity across groups that share entity keys, and the same as of a past
# MAGIC moment (each entity's latest event at or before it).

# COMMAND ----------

refs = [
    "customer_profile.age",
    "customer_profile.segment",
    "transaction_aggregates.txn_count_7d",
    "transaction_aggregates.last_category",
]
latest = store.get_features(refs, entity_ids=[1, 2, 3]).orderBy("customer_id")
print(f"latest features for {latest.count()} customers")
show(latest)

as_of = datetime(2024, 1, 15)
past = store.get_features("customer_profile.*", entity_ids=[1, 2, 3], point_in_time=as_of)
print(f"customer_profile as of {as_of:%Y-%m-%d}")
show(past.orderBy("customer_id"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. Table history and time travel
# MAGIC Every write is a Delta commit; old versions stay readable.

# COMMAND ----------

for commit in store.history("customer_profile"):
    print(f"customer_profile Delta v{commit.version}: {commit.operation} {commit.timestamp}")
first = store.history("customer_profile")[-1].version
print(
    f"rows at Delta v{first}: {store.read_table('customer_profile', as_of_version=first).count()}"
    f", now: {store.read_table('customer_profile').count()}"
)
state = store.registry.group_state("customer_profile")
print(f"registry: {state.writes} write(s), last {state.last_mode} at {state.last_updated}")

# COMMAND ----------

if OWN_SESSION:  # a local run started its own Spark: end it cleanly before exiting
    spark.stop()
