"""The DuckDB engine: Gold tables over delta-rs and DuckDB SQL virtual queries, no Spark."""
