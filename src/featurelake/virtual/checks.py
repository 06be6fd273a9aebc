"""Checks of virtual queries: one query only, its output against the group schema, its sources."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from featurelake.config import FeatureStoreConfig
from featurelake.errors import FeatureStoreError, VirtualizationQueryError
from featurelake.registry.locations import store_root
from featurelake.schema import DataType, FeatureGroupSchema, SqlType, is_safe_cast

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def check_output(
    schema: FeatureGroupSchema,
    columns: Sequence[tuple[str, SqlType]],
    query: str | None = None,
) -> None:
    """Raise VirtualizationQueryError unless the query's columns match the group schema."""
    found = dict(columns)
    expected = list(schema.columns)
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    where = f"The virtual query of group '{schema.name}' v{schema.version}"
    if missing or extra:
        parts = []
        if missing:
            near = {c: [f for f in found if f.lower() == c.lower()] for c in missing}
            hints = [f"'{c}' (found '{near[c][0]}')" if near[c] else f"'{c}'" for c in missing]
            parts.append(f"lacks the column(s) {', '.join(hints)}")
        if extra:
            parts.append(f"yields column(s) the group does not declare: {', '.join(extra)}")
        raise VirtualizationQueryError(
            f"{where} {' and '.join(parts)}. It must yield exactly: {', '.join(expected)}.",
            fix="alias the query's columns to the schema's names (SELECT x AS name) and select "
            "only the keys, the event time and the features.",
            group=schema.name,
            missing=missing,
            extra=extra,
            query=query,
        )
    problems = []
    for key in schema.entity_keys:
        declared = schema.entity_key_types.get(key)
        actual = found[key]
        if declared is not None and not is_safe_cast(actual, declared):
            problems.append((key, actual, declared.simple_string()))
        elif declared is None and not actual.is_atomic:
            problems.append((key, actual, "an atomic type"))
    stamp = found[schema.timestamp_key]
    if stamp.kind not in (DataType.TIMESTAMP, DataType.DATE):
        problems.append((schema.timestamp_key, stamp, "timestamp"))
    for feature in schema.features:
        if not is_safe_cast(found[feature.name], feature.data_type):
            problems.append((feature.name, found[feature.name], feature.data_type.simple_string()))
    if problems:
        listing = "; ".join(f"'{c}' is {actual} but must be {want}" for c, actual, want in problems)
        raise VirtualizationQueryError(
            f"{where} yields columns of the wrong type: {listing}.",
            fix="cast them in the query (CAST(x AS type)) to the declared type, or to one that "
            "converts without loss (int -> bigint, float -> double, date -> timestamp).",
            group=schema.name,
            columns=[c for c, _, _ in problems],
            query=query,
        )


def check_current_output(
    schema: FeatureGroupSchema,
    query: str | None,
    columns: Callable[[], Sequence[tuple[str, SqlType]]],
    unreadable: type[Exception],
) -> None:
    """`check_output` on the columns the query yields now (`columns()`; its sources or the
    group may have changed since the definition). `columns()` raising `unreadable` means a
    column featurelake cannot read: a VirtualizationQueryError too."""
    try:
        found = columns()
    except unreadable as error:
        reason = error.message if isinstance(error, FeatureStoreError) else str(error)
        raise VirtualizationQueryError(
            f"The virtual query of group '{schema.name}' now yields a column featurelake "
            f"cannot read: {reason}",
            fix="cast it in the query and define the group again.",
            group=schema.name,
        ) from error
    check_output(schema, found, query)


# -- helpers ------------------------------------------------------------------------------------


WRAP_PREFIX = "WITH _fl_virtual AS ("


def wrap_sql(sql: str) -> str:
    """`WITH _fl_virtual AS (<sql>) SELECT * FROM _fl_virtual`: only a query fits there, so a
    DDL/DML statement or a second statement is a syntax error instead of being run.

    The query keeps its line numbers (positions on its first line move by the prefix, which
    error messages take back).
    """
    body = sql.rstrip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return f"{WRAP_PREFIX}{body}\n) SELECT * FROM _fl_virtual"


def check_single_query(spark: SparkSession, sql: str) -> None:
    """VirtualizationQueryError unless `sql` is one query statement on its own, so nothing in
    it can close the wrapping sub-query (`wrap_sql`) and start a statement Spark would run.

    The text is scanned for a parenthesis closed at top level or a statement after a `;`
    (comments and quoted text skipped); on a classic session, Spark's parser must also read it
    as one query, or as nothing at all (a syntax error, reported by the usual parse)."""
    problem = _top_level_problem(sql)
    if problem is None:
        parser = _jvm_parser(spark)
        body = sql.rstrip().rstrip(";")
        if (
            parser is not None
            and not _parses(parser.parseQuery, body)
            and _parses(parser.parsePlan, body)
        ):
            problem = "it is a statement other than a query"
    if problem is not None:
        raise NotASingleQuery(problem)


class NotASingleQuery(Exception):
    """The text of a virtual query is not one query statement (reported with its group)."""

    def to_error(self, group: str) -> VirtualizationQueryError:
        return VirtualizationQueryError(
            f"The virtual query of group '{group}' does not parse as a single query statement "
            f"(SELECT, or WITH ... SELECT): {self.args[0]}.",
            fix="pass one query without DDL, DML, a second statement or unbalanced parentheses.",
            group=group,
            condition="NOT_A_SINGLE_QUERY",
        )


def _jvm_parser(spark: SparkSession) -> Any:
    try:
        return spark._jsparkSession.sessionState().sqlParser()
    except Exception:  # Spark Connect: no JVM in this process (the text scan still applies)
        return None


def _parses(parse: Callable[[str], Any], text: str) -> bool:
    try:
        parse(text)
    except Exception:
        return False
    return True


def _top_level_problem(sql: str) -> str | None:
    """Why the text could reach outside a wrapping parenthesis, or None."""
    depth = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            i += 1
            while i < n and sql[i] != c:
                i += 2 if sql[i] == "\\" and c != "`" else 1
        elif sql.startswith("--", i):
            while i < n and sql[i] != "\n":
                i += 1
        elif sql.startswith("/*", i):
            nested, i = 1, i + 2
            while i < n and nested:
                if sql.startswith("/*", i):
                    nested, i = nested + 1, i + 2
                elif sql.startswith("*/", i):
                    nested, i = nested - 1, i + 2
                else:
                    i += 1
            continue  # an unclosed comment or quote swallows the wrapper: a syntax error
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return f"a parenthesis at position {i} closes one it did not open"
        elif c == ";" and depth == 0 and sql[i + 1 :].strip(" \t\r\n;"):
            return f"a second statement follows the ';' at position {i}"
        i += 1
    return None


_RELATION = re.compile(r"'UnresolvedRelation \[([^\]]*)\]")
_CTE = re.compile(r"(?:CTE|UnresolvedWith) \[([^\]]*)\]")


def relation_names(frame: DataFrame, sql: str | None = None) -> tuple[str, ...]:
    """The tables and views a DataFrame's query names, from its parsed plan.

    The plan is read through the JVM on a classic session. Over Spark Connect (no JVM, and
    every plan-explaining call plans the scan, which runs jobs) the query text `sql` is parsed
    instead; without it the names are unknown: ().
    """
    try:
        plan = str(frame._jdf.queryExecution().logical().toString())
    except Exception:
        return sql_relation_names(sql) if sql is not None else ()
    ctes = {n.strip() for m in _CTE.finditer(plan) for n in m[1].split(",")}
    relations = [[p.strip() for p in m[1].split(", ")] for m in _RELATION.finditer(plan)]
    return _relation_names(relations, ctes)


def sql_relation_names(sql: str) -> tuple[str, ...]:
    """The tables and views a Spark SQL query names, parsed without Spark (sqlglot)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="spark")
    except sqlglot.errors.ParseError:
        return ()
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    relations = [
        [part.name for part in table.parts] for table in tree.find_all(exp.Table, bfs=False)
    ]
    return _relation_names(relations, ctes)


def _relation_names(relations: Sequence[Sequence[str]], ctes: set[str]) -> tuple[str, ...]:
    names: list[str] = []
    for parts in relations:
        if len(parts) == 2 and parts[0].lower() in ("delta", "parquet") and "/" in parts[1]:
            name = f"{parts[0].lower()}.`{parts[1]}`"
        elif len(parts) == 1 and parts[0] in ctes:
            continue
        else:
            name = ".".join(parts)
        if name not in names:
            names.append(name)
    return tuple(names)


def plan_roots(frame: DataFrame) -> set[str] | None:
    """Root folders of the file relations (Delta tables) in the analysed plan, or None when
    the plan cannot be read (Spark Connect). Reading the analysed plan runs no job."""
    try:
        leaves = frame._jdf.queryExecution().analyzed().collectLeaves().iterator()
    except Exception:
        return None
    roots: set[str] = set()
    while leaves.hasNext():
        leaf = leaves.next()
        try:
            paths = str(leaf.relation().location().rootPaths().mkString("\n"))
        except Exception:  # not a file relation (CTE reference, local rows, ...)
            continue
        roots.update(local_path(p).rstrip("/") for p in paths.splitlines() if p)
    return roots


def delta_path_of(name: str) -> str | None:
    """The folder of a `delta.`/path`` table name, else None."""
    match = re.fullmatch(r"delta\.`(.+)`", name)
    return local_path(match[1]).rstrip("/") if match else None


def delta_roots(files: Sequence[str]) -> set[str]:
    """The Delta table folders holding `files` (each file's nearest parent with `_delta_log`)."""
    roots: set[str] = set()
    checked: dict[str, bool] = {}
    for file in files:
        folder = os.path.dirname(local_path(file))
        for _ in range(12):
            if not folder or folder in (os.sep, "."):
                break
            if folder not in checked:
                checked[folder] = _is_delta_folder(folder)
            if checked[folder]:
                roots.add(folder)
                break
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return roots


def _is_delta_folder(folder: str) -> bool:
    if "://" not in folder:
        return os.path.isdir(os.path.join(folder, "_delta_log"))
    try:
        from featurelake.storage import is_delta_table

        return is_delta_table(folder)
    except Exception:
        return False


def check_source_paths(config: FeatureStoreConfig, group: str, paths: Sequence[str]) -> None:
    """VirtualizationQueryError when a DuckDB virtual query reads a Delta table outside the
    store and the configured `virtual_source_paths`."""
    roots = [store_root(config), *config.virtual_source_paths]
    allowed = [_resolved(r) for r in roots]
    outside = [
        p
        for p in paths
        if not any(
            _resolved(p) == a or _resolved(p).startswith(a.rstrip("/") + "/") for a in allowed
        )
    ]
    if outside:
        raise VirtualizationQueryError(
            f"The virtual query of group '{group}' reads Delta tables outside the store and "
            f"its configured source paths: {', '.join(outside)}.",
            fix="read tables under the store, or add their folder to the configuration key "
            "virtual_source_paths.",
            group=group,
            condition="SOURCE_PATH_NOT_ALLOWED",
            paths=outside,
        )


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _resolved(path: str) -> str:
    local = local_path(path)
    return local if "://" in local else os.path.realpath(local)


def local_path(path: str) -> str:
    """`file:/x` and `file:///x` as `/x`; other URIs unchanged."""
    if path.startswith("file://"):
        return path[len("file://") :] or "/"
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


def error_condition(error: BaseException) -> str:
    get = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    try:
        return str(get() or "") if get else ""
    except Exception:
        return ""


def engine_message(error: BaseException) -> str:
    """The engine's message without JVM stack traces; parse errors keep their SQL excerpt."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    lines = text.splitlines()
    head = lines[0]
    if "== SQL ==" in text:
        excerpt = text[text.index("== SQL ==") :].split("\n\n")[0]
        return f"{head}\n{excerpt}"
    return head


def sql_excerpt(sql: str, line: int, position: int) -> str:
    """The query's line `line` (1-based) with a caret under `position` (0-based)."""
    lines = sql.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    return f"\n  {lines[line - 1]}\n  {' ' * position}^"
