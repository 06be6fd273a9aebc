"""End-to-end demo on the local embedded default (local Spark + Delta on disk)."""

from __future__ import annotations

import shutil
from pathlib import Path

from featurelake.config import FeatureStoreConfig
from featurelake.session import get_spark

STORE = Path("demo_store")


def main() -> None:
    shutil.rmtree(STORE, ignore_errors=True)
    config = FeatureStoreConfig(
        storage_path=str(STORE.resolve()), spark_master="local[2]", spark_shuffle_partitions=2
    )
    spark = get_spark(config)
    path = str(STORE / "hello")
    spark.range(5).write.format("delta").save(path)
    spark.range(5, 8).write.format("delta").mode("append").save(path)
    print("Delta table now:")
    spark.read.format("delta").load(path).orderBy("id").show()
    print("Version 0 (time travel):")
    spark.read.format("delta").option("versionAsOf", 0).load(path).orderBy("id").show()


if __name__ == "__main__":
    main()
