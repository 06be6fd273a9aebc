"""Virtual queries and the executors that run them, chosen by name.

Queries run through a `QueryExecutor` chosen by name (`EXECUTORS`: `spark`, and `duckdb` for
DuckDB SQL over Delta tables read by delta-rs; another engine is one module in its engine's folder
plus one entry). The base class times and logs every call and turns every engine failure into a
`VirtualizationQueryError` naming the group; an executor only talks to its engine.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger

from featurelake.errors import (
    ConfigurationError,
    VirtualizationQueryError,
)
from featurelake.plan.engine_choice import Engine
from featurelake.plugins import load_subclass
from featurelake.schema import SqlType
from featurelake.session import jvm_attribute, unsupported_over_connect
from featurelake.virtual.checks import NotASingleQuery, engine_message

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


QueryFunction = Callable[["SparkSession"], "DataFrame"]


# -- queries and executors ----------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualQuery:
    """What an executor runs: SQL text, or a function `f(spark) -> DataFrame`."""

    sql: str | None = None
    function: QueryFunction | None = None

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.function is None):
            raise ValueError("a VirtualQuery holds exactly one of sql and function")


@dataclass(frozen=True)
class AnalysedQuery:
    """A query's output columns (featurelake types) and the tables it reads."""

    columns: tuple[tuple[str, SqlType], ...]
    sources: tuple[str, ...] = ()
    """Tables and views the query names (as written, `delta.`/path`` for path tables)."""
    source_paths: tuple[str, ...] = ()
    """Root folders of the Delta tables it reads (their log statistics feed estimates)."""


@dataclass
class _Timing:
    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


class QueryExecutor(ABC):
    """Runs virtual queries on one engine. Subclasses implement `_analyse` and `_execute`.

    The base class logs and times every call and wraps every engine failure into a
    `VirtualizationQueryError` naming the group, the engine and the cause (`_describe_error`
    lets an engine say why and what to do for the errors it knows).
    """

    name: ClassVar[str] = "?"

    def __init__(self) -> None:
        self.timeout_seconds: float | None = None
        """`query_timeout_seconds`: a query running longer is cancelled (QueryTimeoutError)."""
        self._timings: dict[str, _Timing] = {}
        self._lock = threading.Lock()

    def analyse(self, group: str, query: VirtualQuery) -> AnalysedQuery:
        """Parse and analyse `query` without reading data: its columns and source tables."""
        return self._call("analyse", group, query, lambda: self._analyse(query))

    def execute(self, group: str, query: VirtualQuery) -> DataFrame:
        """The query's rows as a (lazy) Spark DataFrame.

        Errors Spark raises later, when the DataFrame runs, are Spark's own.
        """
        return self._call("execute", group, query, lambda: self._execute(query))

    def timings(self) -> dict[str, dict[str, float]]:
        """Calls, failures and seconds spent per operation (`analyse`, `execute`)."""
        with self._lock:
            return {
                action: {"calls": t.calls, "failures": t.failures, "seconds": round(t.seconds, 6)}
                for action, t in self._timings.items()
            }

    @abstractmethod
    def _analyse(self, query: VirtualQuery) -> AnalysedQuery: ...

    @abstractmethod
    def _execute(self, query: VirtualQuery) -> DataFrame: ...

    def _describe_error(
        self, error: BaseException, query: VirtualQuery
    ) -> tuple[str, str, str, dict[str, Any]]:
        """(why, engine message, fix, details) for an engine error; engines override this for
        the errors they know."""
        return (
            "failed",
            engine_message(error),
            "correct the query (the engine's message above names the problem).",
            {},
        )

    def _call(
        self, action: str, group: str, query: VirtualQuery, operation: Callable[[], Any]
    ) -> Any:
        started = time.perf_counter()
        failed = False
        try:
            return operation()
        except VirtualizationQueryError:
            failed = True
            raise
        except NotASingleQuery as error:
            failed = True
            raise error.to_error(group) from None
        except Exception as error:
            failed = True
            attribute = jvm_attribute(error)
            if attribute is not None:
                raise unsupported_over_connect(
                    f"The virtual query of group '{group}'", attribute, group=group
                ) from error
            why, message, fix, details = self._describe_error(error, query)
            raise VirtualizationQueryError(
                f"The virtual query of group '{group}' {why} ({self.name} engine): {message}",
                fix=fix,
                group=group,
                engine=self.name,
                **details,
            ) from error
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                timing = self._timings.setdefault(action, _Timing())
                timing.calls += 1
                timing.failures += int(failed)
                timing.seconds += elapsed
            logger.debug(
                "{} {} of group '{}' took {:.3f}s{}",
                self.name,
                action,
                group,
                elapsed,
                " (failed)" if failed else "",
            )


def does_not_parse(message: str, details: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """The `_describe_error` of a query that does not parse (`message` shows where)."""
    return (
        "does not parse",
        message,
        "correct the SQL at the position shown; a virtual query is one SELECT (WITH ... "
        "SELECT is fine) without a trailing statement.",
        details,
    )


ExecutorLoader = Callable[[Any], QueryExecutor]
"""Builds an executor from a SparkSession, or a function returning one (called only if needed)."""

EXECUTORS: dict[str, str] = {
    Engine.SPARK.value: "featurelake.engines.spark.executor:load_executor",
    Engine.DUCKDB.value: "featurelake.engines.duckdb.executor:load_executor",
}
"""Executor name -> `module:function` of its loader, in its engine's folder (imported on use,
so an engine's optional dependencies are needed only when it runs)."""


def session_of(spark: Any) -> SparkSession:
    """The session itself, or the result of calling a session provider."""
    return spark() if callable(spark) else spark


def create_query_executor(name: str, spark: Any) -> QueryExecutor:
    """The executor called `name`: a key of `EXECUTORS`, or the dotted path of a
    `QueryExecutor` subclass (constructed with the SparkSession). `spark` is a session or a
    function returning one (called only by engines that need Spark)."""
    target = EXECUTORS.get(str(name).lower())
    if target is not None:
        module, _, function = target.partition(":")
        loader: ExecutorLoader = getattr(importlib.import_module(module), function)
        return loader(spark)
    if "." in str(name):
        cls = load_subclass(str(name), QueryExecutor, what="query executor")
        factory: Callable[[SparkSession], QueryExecutor] = cls
        return factory(session_of(spark))
    raise ConfigurationError(
        f"Unknown query executor '{name}'.",
        fix=f"use one of {', '.join(EXECUTORS)}, or the dotted path of a QueryExecutor class.",
    )
