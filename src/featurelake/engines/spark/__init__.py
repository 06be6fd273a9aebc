"""The Spark engine: latest values, point-in-time joins, windows and tiles, training sets."""
