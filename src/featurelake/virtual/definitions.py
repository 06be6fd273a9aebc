"""Virtual definitions as the registry keeps them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from featurelake.plan.engine_choice import Engine
from featurelake.registry import group_key

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.schema import FeatureGroupSchema
    from featurelake.virtual.executors import QueryExecutor


VIRTUAL = "virtual"
"""Registry kind of virtual definitions (key `group@version`)."""

QueryFunction = Callable[["SparkSession"], "DataFrame"]


# -- definitions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualDefinition:
    """A virtual group as the registry keeps it."""

    group: str
    version: int
    engine: str
    query: str | None
    function: str | None
    """`module:qualname` of a query function (None for SQL, or a function not importable)."""
    sources: tuple[str, ...]
    source_paths: tuple[str, ...]
    columns: Mapping[str, str]
    fingerprint: str
    created_at: str = ""
    importable: bool = True

    @property
    def key(self) -> str:
        return group_key(self.group, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "sources": list(self.sources),
            "source_paths": list(self.source_paths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VirtualDefinition:
        return cls(
            group=data["group"],
            version=int(data["version"]),
            engine=data.get("engine", Engine.SPARK.value),
            query=data.get("query"),
            function=data.get("function"),
            sources=tuple(data.get("sources", ())),
            source_paths=tuple(data.get("source_paths", ())),
            columns=dict(data.get("columns", {})),
            fingerprint=data.get("fingerprint", ""),
            created_at=data.get("created_at", ""),
            importable=bool(data.get("importable", True)),
        )


def function_path(function: Callable[..., Any]) -> str | None:
    """`module:qualname` when the function can be imported by that name, else None."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def import_function(definition: VirtualDefinition) -> QueryFunction | None:
    assert definition.function is not None
    module_name, _, qualname = definition.function.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target if callable(target) else None


class VirtualDefinitions(Protocol):
    """Where an engine finds a group's virtual definition and the executor that runs it."""

    def find_definition(self, schema: FeatureGroupSchema) -> VirtualDefinition | None:
        """The group's definition, or None when it has none."""
        ...

    def definition(self, schema: FeatureGroupSchema) -> VirtualDefinition:
        """The group's definition, or an error naming how to define one."""
        ...

    def executor(self, engine: str | None = None) -> QueryExecutor:
        """The query executor of `engine`."""
        ...
