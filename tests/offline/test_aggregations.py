"""Windowed aggregations offline: exact against a pandas reference, linear plan, errors."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.engines.spark import windows
from featurelake.engines.spark.windows import Tiles, WindowOutput, tile_partials, window_aggregates
from featurelake.errors import PointInTimeError

pytestmark = pytest.mark.spark

T0 = datetime(2024, 3, 1)
WINDOWS = [timedelta(hours=1), timedelta(days=1), timedelta(days=7)]
FUNCTIONS = ["count", "sum", "avg", "min", "max", "stddev", "last", "approx_count_distinct"]


def random_data(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events on 6 keys, key 1 with a burst; some entity times exactly on window edges."""
    rng = random.Random(seed)
    rows = []
    for key in range(1, 7):
        count = 300 if key == 1 else rng.randint(0, 25)
        for _ in range(count):
            ts = T0 + timedelta(seconds=rng.randrange(0, 10 * 86400, 60 if key != 2 else 3600))
            amount = None if rng.random() < 0.15 else round(rng.uniform(-50, 500), 2)
            rows.append((key, ts, amount, rng.choice("abc"), rng.randint(0, 12)))
    events = pd.DataFrame(rows, columns=["k", "ts", "amount", "category", "item"])
    entity_rows = []
    for key in range(0, 8):
        for _ in range(12):
            entity_rows.append((key, T0 + timedelta(seconds=rng.randrange(0, 11 * 86400))))
    sample = events.sample(12, random_state=seed)
    for key, ts in zip(sample["k"], sample["ts"], strict=True):  # on an event, and a window edge
        entity_rows.append((key, ts))
        entity_rows.append((key, ts + rng.choice(WINDOWS)))
    entity_rows.append((1, None))
    entities = pd.DataFrame(entity_rows, columns=["k", "t"])
    entities["label"] = range(len(entities))
    return entities, events


def spark_frames(spark: SparkSession, entities: pd.DataFrame, events: pd.DataFrame) -> Any:
    entity_df = spark.createDataFrame(
        [
            (int(r.k), None if pd.isna(r.t) else r.t.to_pydatetime(), int(r.label))
            for r in entities.itertuples()
        ],
        "k bigint, t timestamp, label bigint",
    )
    event_df = spark.createDataFrame(
        [
            (
                int(r.k),
                r.ts.to_pydatetime(),
                None if pd.isna(r.amount) else float(r.amount),
                r.category,
                int(r.item),
            )
            for r in events.itertuples()
        ],
        "k int, ts timestamp, amount double, category string, item int",
    )
    return entity_df, event_df


def close(got: Any, expected: Any, function: str) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return got is None
    if got is None:
        return False
    if function in ("sum", "avg", "stddev"):
        return abs(got - expected) <= 1e-9 * max(1.0, abs(expected))
    if function == "approx_count_distinct":
        return abs(got - expected) <= max(1, 0.05 * expected)
    return got == expected


def every_output() -> list[WindowOutput]:
    outputs = []
    for function in FUNCTIONS:
        column = "item" if function == "approx_count_distinct" else "amount"
        kind = "bigint" if function in ("count", "approx_count_distinct") else "double"
        for window in WINDOWS:
            name = f"{function}_{int(window.total_seconds())}"
            outputs.append(WindowOutput(name, column, function, window, None, kind))
    filtered = WindowOutput("paid_7d", "amount", "sum", WINDOWS[2], "category = 'a'", "double")
    events_1d = WindowOutput("events_1d", "*", "count", WINDOWS[1], "category <> 'c'", "bigint")
    return [*outputs, filtered, events_1d]


def assert_matches_reference(
    result: Any,
    entities: pd.DataFrame,
    events: pd.DataFrame,
    window_reference: Any,
    outputs: list[WindowOutput] | None = None,
) -> None:
    outputs = outputs or every_output()
    assert result.columns == ["k", "t", "label", *[o.name for o in outputs]]
    got = result.orderBy("label").toPandas().astype(object).where(lambda f: f.notna(), None)
    assert list(got["label"]) == list(entities["label"])
    for output in outputs:
        keep = None
        if output.filter == "category = 'a'":
            keep = lambda f: f["category"] == "a"  # noqa: E731
        elif output.filter:
            keep = lambda f: f["category"] != "c"  # noqa: E731
        expected = window_reference(
            entities, events, "k", output.column, output.function, output.window, keep
        )
        for i, (value, want) in enumerate(zip(got[output.name], expected, strict=True)):
            row = entities.iloc[i]
            if pd.isna(row["t"]):
                assert value is None, output.name
                continue
            assert close(value, want, output.function), (output.name, row.to_dict(), value, want)


def test_every_function_and_window_matches_the_reference(
    spark: SparkSession, window_reference: Any
) -> None:
    entities, events = random_data()
    entity_df, event_df = spark_frames(spark, entities, events)
    result = window_aggregates(entity_df, event_df, ["k"], "ts", "t", every_output())
    assert_matches_reference(result, entities, events, window_reference)


def test_count_sum_avg_and_last_alone_match_the_reference(
    spark: SparkSession, window_reference: Any
) -> None:
    """Without min/max/stddev/distinct there are no probe rows: each value is on its row."""
    entities, events = random_data(seed=3)
    entity_df, event_df = spark_frames(spark, entities, events)
    outputs = [o for o in every_output() if o.function in ("count", "sum", "avg", "last")]
    result = window_aggregates(entity_df, event_df, ["k"], "ts", "t", outputs)
    assert_matches_reference(result, entities, events, window_reference, outputs)


def test_tiles_mixed_with_raw_events_match_the_reference(
    spark: SparkSession, window_reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entity times anywhere: the tiles they fall inside are read raw, the others as tiles."""
    monkeypatch.setattr(windows, "RAW_SHARE", 1.0)  # use the tiles however many are hit
    entities, events = random_data(seed=11)
    entity_df, event_df = spark_frames(spark, entities, events)
    size = timedelta(hours=1)
    tiles = Tiles(tile_partials(event_df, ["k"], "ts", every_output(), size), size)
    result = window_aggregates(entity_df, event_df, ["k"], "ts", "t", every_output(), tiles=tiles)
    assert_matches_reference(result, entities, events, window_reference)


def test_entity_times_on_tile_edges_read_the_tiles_alone(
    spark: SparkSession, window_reference: Any
) -> None:
    """Daily snapshots over daily tiles need no raw event: the events passed are empty."""
    entities, events = random_data(seed=5)
    days = [T0 + timedelta(days=d) for d in range(0, 12, 2)]
    entities = pd.DataFrame(
        [(k, day) for k in range(0, 8) for day in days], columns=["k", "t"]
    ).assign(label=lambda f: range(len(f)))
    entity_df, event_df = spark_frames(spark, entities, events)
    size = timedelta(days=1)
    outputs = [o for o in every_output() if o.window >= size]
    tiles = Tiles(tile_partials(event_df, ["k"], "ts", outputs, size), size)
    result = window_aggregates(entity_df, event_df.limit(0), ["k"], "ts", "t", outputs, tiles=tiles)
    assert_matches_reference(result, entities, events, window_reference, outputs)


def test_bad_inputs_raise_before_any_job(spark: SparkSession) -> None:
    entities, events = random_data()
    entity_df, event_df = spark_frames(spark, entities, events)
    total = WindowOutput("total", "amount", "sum", WINDOWS[1])
    with pytest.raises(PointInTimeError, match="no column 'price'"):
        window_aggregates(
            entity_df,
            event_df,
            ["k"],
            "ts",
            "t",
            [WindowOutput("total", "price", "sum", WINDOWS[1])],
        )
    with pytest.raises(PointInTimeError, match="sum of 'category'"):
        bad = WindowOutput("bad", "category", "sum", WINDOWS[1])
        window_aggregates(entity_df, event_df, ["k"], "ts", "t", [bad])
    with pytest.raises(PointInTimeError, match=r"'k'.*string"):
        window_aggregates(
            entity_df.withColumn("k", entity_df["k"].cast("string")),
            event_df,
            ["k"],
            "ts",
            "t",
            [total],
        )
    with pytest.raises(PointInTimeError, match="no event time column 'when'"):
        window_aggregates(entity_df, event_df, ["k"], "when", "t", [total])
