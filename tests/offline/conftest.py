"""Fixtures of the offline tests: an independent pandas reference for windowed aggregations."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from featurelake.plan import rules


def _us(value: Any) -> int:
    """Epoch microseconds of a naive (UTC) pandas timestamp."""
    return int(pd.Timestamp(value).value // 1_000)


def reference(
    entities: pd.DataFrame,
    events: pd.DataFrame,
    key: str,
    column: str,
    function: str,
    window: timedelta,
    keep: Any = None,
) -> list[Any]:
    """The value for each entity row: events of its key in the window ending at its time (the
    rule `plan.rules.in_window`: t - window < ts <= t), where `keep(events)` holds."""
    chosen = events if keep is None else events[keep(events)]
    by_key = {k: frame.sort_values("ts") for k, frame in chosen.groupby(key)}
    out: list[Any] = []
    for _, row in entities.iterrows():
        t = row["t"]
        frame = by_key.get(row[key])
        if frame is None or pd.isna(t):
            out.append(0 if function in ("count", "approx_count_distinct") else None)
            continue
        inside = frame[[rules.in_window(_us(ts), _us(t), window) for ts in frame["ts"]]]
        values = inside if column == "*" else inside[inside[column].notna()]
        series = values[column] if column != "*" else None
        n = len(values)
        if function == "count":
            out.append(n)
        elif function == "approx_count_distinct":
            out.append(int(series.nunique()) if series is not None else n)
        elif n == 0 or series is None:
            out.append(None)
        elif function == "sum":
            out.append(math.fsum(series))
        elif function == "avg":
            out.append(math.fsum(series) / n)
        elif function == "stddev":
            out.append(float(np.std(series.to_numpy(), ddof=1)) if n > 1 else None)
        elif function == "min":
            out.append(series.min())
        elif function == "max":
            out.append(series.max())
        elif function == "last":
            latest = values[values["ts"] == values["ts"].max()]
            out.append(latest[column].max())
        else:
            raise ValueError(function)
    return out


@pytest.fixture(scope="session")
def window_reference() -> Any:
    """`reference(entities, events, key, column, function, window, keep)`: per key, one window."""
    return reference
