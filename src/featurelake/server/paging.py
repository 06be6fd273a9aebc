"""Pages of a historical answer: consecutive slices of the request's entities.

An answer larger than a page (`historical_page_cells` values, or the request's `page_size`
rows) is answered one slice of entities at a time; each page runs only its entities' query,
so no page holds more than a page's worth in memory or on the wire. The page token names the
next slice and the request it belongs to (a digest of the body without its token), so a token
replayed with another body is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from featurelake.server.errors import InvalidPageTokenError


@dataclass(frozen=True)
class Page:
    """One slice `[offset, offset + size)` of the (de-duplicated) entities."""

    entities: list[Any]
    offset: int
    total: int
    next_token: str | None


def unique_entities(entities: list[Any]) -> list[Any]:
    """The entities without repeats, in the order given."""
    seen: dict[str, Any] = {}
    for entity in entities:
        seen.setdefault(json.dumps(entity, sort_keys=True, default=str), entity)
    return list(seen.values())


def request_digest(body: dict[str, Any]) -> str:
    """What a token is bound to: the request body without its page token."""
    fields = {k: v for k, v in body.items() if k != "page_token"}
    text = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def page_of(
    entities: list[Any],
    *,
    cells_per_entity: int,
    rows_per_entity: int,
    page_cells: int,
    page_size: int | None,
    token: str | None,
    digest: str,
) -> Page:
    """The page `token` names (the first page without one) and the token of the next page."""
    unique = unique_entities(entities)
    size = max(1, page_cells // max(1, cells_per_entity))
    if page_size is not None:
        size = min(size, max(1, page_size // max(1, rows_per_entity)))
    offset = 0 if token is None else _offset(token, digest, len(unique))
    end = min(len(unique), offset + size)
    following = _token(end, digest) if end < len(unique) else None
    return Page(unique[offset:end], offset, len(unique), following)


def _token(offset: int, digest: str) -> str:
    raw = json.dumps({"o": offset, "r": digest}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset(token: str, digest: str, total: int) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
        offset, bound = decoded["o"], decoded["r"]
    except (ValueError, TypeError, KeyError):
        raise _invalid("The page token is not one this server gave.") from None
    if bound != digest:
        raise _invalid("The page token belongs to another request.")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 < offset < total:
        raise _invalid("The page token is not one this server gave.")
    return offset


def _invalid(message: str) -> InvalidPageTokenError:
    return InvalidPageTokenError(
        message,
        fix="send the body of the first request again with the `next_page_token` of the "
        "previous page as `page_token`, or leave `page_token` out for the first page.",
    )
