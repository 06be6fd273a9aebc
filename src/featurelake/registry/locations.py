"""Where things live in a store: Gold tables of groups, registry tables, side tables."""

from __future__ import annotations

from dataclasses import dataclass

from featurelake.config import FeatureStoreConfig


def quote_identifier(name: str) -> str:
    """Quote a Spark SQL identifier (or a path used as one) with backticks."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class TableLocation:
    """A Delta table, addressed by path or by catalog name."""

    path: str | None = None
    table_name: str | None = None

    @property
    def sql_name(self) -> str:
        """The name to use in Spark SQL: delta.`/path` or `catalog`.`db`.`table`."""
        if self.table_name:
            return ".".join(quote_identifier(part) for part in self.table_name.split("."))
        assert self.path is not None
        return f"delta.{quote_identifier(self.path)}"

    def __str__(self) -> str:
        return self.table_name or self.path or "?"


def store_root(config: FeatureStoreConfig) -> str:
    return config.storage_path.rstrip("/")


def gold_location(config: FeatureStoreConfig, group: str, version: int) -> TableLocation:
    """The Gold table of a group version: a catalog table when a database is set, else a path."""
    if config.database:
        parts = [p for p in (config.catalog, config.database) if p]
        return TableLocation(table_name=".".join([*parts, f"{group}_v{version}"]))
    return TableLocation(path=f"{store_root(config)}/gold/{group}/v{version}")


def side_location(config: FeatureStoreConfig, kind: str, name: str) -> TableLocation:
    """A featurelake-owned side table (quarantine, staging, tiles...) under the store."""
    if config.database:
        parts = [p for p in (config.catalog, config.database) if p]
        return TableLocation(table_name=".".join([*parts, f"_{kind}_{name}"]))
    return TableLocation(path=f"{store_root(config)}/_{kind}/{name}")


def registry_location(config: FeatureStoreConfig, table: str) -> TableLocation:
    """A registry table; always under `{storage_path}/_registry` so the store describes itself."""
    return TableLocation(path=f"{store_root(config)}/_registry/{table}")
