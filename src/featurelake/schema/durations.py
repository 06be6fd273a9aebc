"""Durations written as `30d`, `12h`, `15m`, `45s`, `2w` or a number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from featurelake.errors import SchemaValidationError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: str | int | float | timedelta | None, *, what: str) -> timedelta | None:
    """Read a duration; `what` names the setting in the error message."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise _bad(value, what)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise _bad(value, what)
        seconds = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))}).total_seconds()
    if seconds <= 0:
        raise _bad(value, what)
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact text for a duration (`7d`, `90m`, `3600s` stays `1h`)."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _bad(value: object, what: str) -> SchemaValidationError:
    return SchemaValidationError(
        f"The {what} {value!r} is not a positive duration.",
        fix="write it as a number with a unit: 45s, 15m, 12h, 30d or 2w.",
    )
