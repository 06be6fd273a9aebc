"""Fast JSON for serve responses: plain values pass through, the rest is converted once.

FastAPI's generic encoder walks every value through several isinstance checks; a 100-entity,
20-feature vector set spends most of its time there. Here ints, strings, booleans and None go
through as they are, floats lose NaN / infinity (null, as JSON has none), datetimes become
ISO-8601 text, and only other values (decimals, dates, lists, maps) take the generic path.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response

PLAIN = (str, int, bool, type(None))


def json_value(value: Any) -> Any:
    """A JSON-ready copy of one feature value."""
    kind = type(value)
    if kind in PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is datetime:
        return value.isoformat()
    return jsonable_encoder(value, custom_encoder={float: _finite})


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class FastJSONResponse(Response):
    """A JSON response whose content is already JSON-ready (no re-encoding pass)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=False).encode("utf-8")
