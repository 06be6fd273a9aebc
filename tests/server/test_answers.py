"""Historical answers are rendered by DuckDB and sent in chunks of rows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from featurelake.server.answers import answer_chunks

T0 = datetime(2024, 3, 1)
HEAD = {"group": "ledger", "version": 1}
TAIL = {"metadata": {"engine": "spark"}, "next_page_token": None}


def _table() -> pa.Table:
    """Seven answer rows out of order: entities 2 and 1, windows of a day, a NaN and a null."""
    rows = [
        (2, 1, 5.0, 3),
        (1, 2, float("nan"), 1),
        (2, 0, 1.5, None),
        (1, 0, 0.25, 2),
        (2, 2, float("inf"), 4),
        (1, 1, 7.0, 0),
        (2, 3, -1.0, 9),
    ]
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "_start": pa.array([T0 + timedelta(days=r[1]) for r in rows], pa.timestamp("us")),
            "_end": pa.array([T0 + timedelta(days=r[1] + 1) for r in rows], pa.timestamp("us")),
            "amount_max": pa.array([r[2] for r in rows], pa.float64()),
            "amount_count": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def _expected() -> list[dict[str, object]]:
    table = _table().to_pylist()
    table.sort(key=lambda r: (r["customer_id"], r["_start"]))
    out = []
    for r in table:
        amount = r["amount_max"]
        finite = amount is not None and amount == amount and abs(amount) != float("inf")
        out.append(
            {
                "entity": {"customer_id": r["customer_id"]},
                "window_start": r["_start"].isoformat(),
                "window_end": r["_end"].isoformat(),
                "values": {
                    "amount_max": amount if finite else None,
                    "amount_count": r["amount_count"],
                },
            }
        )
    return out


@pytest.mark.parametrize("rows_per_chunk", [1, 2, 3, 7, 100])
def test_chunks_join_into_one_ordered_answer(rows_per_chunk: int) -> None:
    chunks = list(
        answer_chunks(
            HEAD, _table(), ["customer_id"], ["amount_max", "amount_count"], TAIL, rows_per_chunk
        )
    )
    # the opening, one chunk per rows_per_chunk rows, the closing
    assert len(chunks) == 2 + -(-7 // rows_per_chunk)
    answer = json.loads(b"".join(chunks))
    assert answer == {**HEAD, "rows": _expected(), **TAIL}


def test_an_empty_answer_has_no_rows() -> None:
    empty = _table().slice(0, 0)
    chunks = list(answer_chunks(HEAD, empty, ["customer_id"], ["amount_max"], TAIL))
    assert json.loads(b"".join(chunks)) == {**HEAD, "rows": [], **TAIL}
