"""Virtual definitions: feature groups computed by a query at read time, and their validation."""
