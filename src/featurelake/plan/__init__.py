"""The read plan: a request resolved once, and the read rules every engine compiles."""
