"""The metadata registry: groups, versions, lineage, write history, stored in Delta."""
