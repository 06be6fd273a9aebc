"""Pipeline nodes: plain callables that read or write features inside any DAG framework.

Each factory returns a function (DataFrame in, DataFrame or a JSON-friendly dict out) that fits
a Kedro `node(...)`, an Airflow `PythonOperator(python_callable=...)`, a Dagster op body or a
hand-written runner, without importing any of them. Building a node is cheap and starts no
Spark: the store is built from the config on the first call, in the process that runs the node.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.config import FeatureStoreConfig
from featurelake.errors import ConfigurationError
from featurelake.pipeline.runtime import absolute_storage, load_settings
from featurelake.pipeline.sources import parse_time, read_source
from featurelake.pipeline.tasks import (
    arrow_safe,
    feature_ref_list,
    materialize,
    parse_mode,
    write_summary,
)
from featurelake.serving.shapes import alias
from featurelake.serving.store import FeatureStore
from featurelake.stores.materialized import WriteMode

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ConfigLike = FeatureStoreConfig | str | os.PathLike[str] | None


class StoreHandle:
    """A store given up front, or built from a config (or a config file) on first use."""

    def __init__(self, store: FeatureStore | None = None, config: ConfigLike = None) -> None:
        self._store = store
        self._config = config
        self._lock = threading.Lock()

    def get(self) -> FeatureStore:
        with self._lock:
            if self._store is None:
                config = self._config
                if isinstance(config, FeatureStoreConfig):
                    config = absolute_storage(config)
                else:
                    config = load_settings(config)
                self._store = FeatureStore(config)
            return self._store


def _name(prefix: str, text: str) -> str:
    return prefix + "_" + re.sub(r"\W+", "_", text).strip("_")


def write_features_node(
    group: str | None = None,
    mode: str | WriteMode = WriteMode.APPEND,
    *,
    config: ConfigLike = None,
    store: FeatureStore | None = None,
    source_format: str = "auto",
    job: str | None = None,
    name: str | None = None,
    feature_group: str | None = None,
    feature_store: str | None = None,
    input_source: str | Sequence[str] | None = None,
) -> Callable[..., dict[str, Any]]:
    """A node that writes its input into `group` and returns what it wrote (a dict).

    The input is a Spark or pandas DataFrame, or a path / table name to read. Called with
    `start` and `end` (datetimes or ISO text, e.g. Airflow's `{{ data_interval_start }}`), it
    backfills that range instead of writing with `mode`.

    `name` names the node (its `__name__`); `feature_group=` is accepted for `group`;
    `input_source` names the upstream node(s) feeding it (kept as `.inputs` for wiring a
    DAG); `feature_store` may only be "materialized" (writes go to Gold tables).
    """
    call = "write_features_node"
    group = alias(group, feature_group, ours_name="group", seed_name="feature_group", call=call)
    if feature_store is not None and str(feature_store).lower() != "materialized":
        raise ConfigurationError(
            f"write_features_node(feature_store={feature_store!r}): featurelake writes every "
            "group to its Gold table.",
            fix="drop feature_store= (or pass 'materialized'); a virtual group is computed, "
            "never written.",
            key="feature_store",
        )
    write_mode = parse_mode(mode)
    handle = StoreHandle(store, config)
    lineage_job = job or f"pipeline node {_name('write', group)}"

    def write_features(
        df: Any, start: str | datetime | None = None, end: str | datetime | None = None
    ) -> dict[str, Any]:
        result = materialize(
            handle.get(),
            group,
            df,
            mode=write_mode,
            start=start,
            end=end,
            source_format=source_format,
            job=lineage_job,
        )
        return write_summary(result)

    write_features.__name__ = write_features.__qualname__ = name or _name("write", group)
    write_features.inputs = _inputs(input_source)  # type: ignore[attr-defined]
    return write_features


def read_features_node(
    feature_refs: str | Sequence[str] | None = None,
    *,
    point_in_time: str | datetime | None = None,
    config: ConfigLike = None,
    store: FeatureStore | None = None,
    as_pandas: bool = False,
    name: str | None = None,
    feature_names: str | Sequence[str] | None = None,
    feature_store: str | None = None,
    entity_ids_source: str | Sequence[str] | None = None,
) -> Callable[..., Any]:
    """A node that returns the latest value per entity of `feature_refs`.

    Its optional input selects entities: a DataFrame of key columns, a list of ids, or None
    for every entity. `point_in_time` (here or per call) reads values as of that time.

    `name` names the node; `feature_names=` is accepted for `feature_refs` (bare names too);
    `feature_store` picks the read strategy ("materialized", "virtualized" or "hybrid");
    `entity_ids_source` names the upstream node giving the entities (kept as `.inputs`).
    """
    refs = feature_ref_list(
        alias(
            feature_refs,
            feature_names,
            ours_name="feature_refs",
            seed_name="feature_names",
            call="read_features_node",
        )
    )
    strategy = _strategy(feature_store)
    handle = StoreHandle(store, config)
    default_time = None if point_in_time is None else parse_time(point_in_time)

    def read_features(entities: Any = None, point_in_time: str | datetime | None = None) -> Any:
        when = default_time if point_in_time is None else parse_time(point_in_time)
        frame = handle.get().get_features(
            refs, entity_ids=arrow_safe(entities), point_in_time=when, strategy=strategy
        )
        return frame.toPandas() if as_pandas else frame

    read_features.__name__ = read_features.__qualname__ = name or _name(
        "read", refs[0].split(".")[0]
    )
    read_features.inputs = _inputs(entity_ids_source)  # type: ignore[attr-defined]
    return read_features


STRATEGIES = {"materialized": "materialized", "virtualized": "virtual", "hybrid": "auto"}


def _strategy(feature_store: str | None) -> Any:
    """The read strategy a node's `feature_store` names."""
    if feature_store is None:
        return None
    strategy = STRATEGIES.get(str(feature_store).lower())
    if strategy is None:
        raise ConfigurationError(
            f"A node's feature_store is {feature_store!r}.",
            fix=f"use one of {', '.join(STRATEGIES)} (latest values online: a FeatureService "
            "or store.get_online_features).",
            key="feature_store",
        )
    return strategy


def _inputs(source: str | Sequence[str] | None) -> list[str]:
    """The upstream node names a node reads from."""
    if source is None:
        return []
    return [source] if isinstance(source, str) else [str(s) for s in source]


def training_set_node(
    feature_refs: str | Sequence[str],
    *,
    ttl: str | timedelta | None = None,
    timestamp_column: str | None = None,
    fill: str = "none",
    config: ConfigLike = None,
    store: FeatureStore | None = None,
    entities_format: str = "auto",
    as_pandas: bool = False,
) -> Callable[..., Any]:
    """A node that joins `feature_refs` point-in-time-correctly onto its entity DataFrame.

    The input holds entity keys and an event time per row (Spark or pandas, or a path / table
    name to read); the output adds one column per feature, each the latest value at or before
    that row's time (within `ttl` when given; `fill="last_non_null"` skips null values).
    """
    refs = feature_ref_list(feature_refs)
    handle = StoreHandle(store, config)

    def training_set(entity_df: Any) -> DataFrame | Any:
        store_ = handle.get()
        entities = (
            read_source(store_.spark, entity_df, entities_format, what="entity data")
            if isinstance(entity_df, str)
            else arrow_safe(entity_df)
        )
        frame = store_.get_historical_features(
            entities, refs, ttl=ttl, timestamp_column=timestamp_column, fill=fill
        )
        return frame.toPandas() if as_pandas else frame

    training_set.__name__ = training_set.__qualname__ = _name("training_set", refs[0].split(".")[0])
    return training_set
