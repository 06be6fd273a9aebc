"""Gold Delta tables: Spark writes and merges, and Spark-free snapshots through delta-rs."""
