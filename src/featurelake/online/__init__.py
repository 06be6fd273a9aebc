"""Online stores: low-latency latest values (in-process or Redis)."""
