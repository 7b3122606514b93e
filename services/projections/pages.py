"""Opaque cursors: the sort key and id of the last row of a page, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.projections.problems import invalid

RowT = TypeVar("RowT")
ViewT = TypeVar("ViewT")


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, *, sort: str) -> dict[str, Any] | None:
    """The cursor's values; 422 naming ``cursor`` if it is not one of ours for this sort."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise invalid("cursor", "not a cursor from a previous page") from error
    if not isinstance(values, dict) or values.get("sort") != sort or "id" not in values:
        raise invalid("cursor", "not a cursor from a previous page with this sort")
    return values


@dataclass(frozen=True, slots=True)
class Page(Generic[ViewT]):
    items: list[ViewT]
    next_cursor: str | None
    # A search stopped at the scan limit before the page was full.
    search_truncated: bool = False


async def keyset_page(
    fetch: Callable[[dict[str, Any] | None, int], Awaitable[list[RowT]]],
    views: Callable[[list[RowT]], Awaitable[list[ViewT]]],
    position_of: Callable[[RowT], dict[str, Any]],
    *, after: dict[str, Any] | None, limit: int,
    matches: Callable[[ViewT], bool] | None = None, scan_limit: int = 5000,
) -> Page[ViewT]:
    """A page of rows after ``after``; with ``matches``, rows are opened and filtered in memory.

    Searched values are sealed in the tables, so a search opens rows in order
    until the page is full or ``scan_limit`` rows were looked at.
    """
    if matches is None:
        rows = await fetch(after, limit + 1)
        shown = rows[:limit]
        more = len(rows) > limit and bool(shown)
        return Page(await views(shown), encode_cursor(position_of(shown[-1])) if more else None)
    chunk = max(limit * 2, 100)
    items: list[ViewT] = []
    scanned = 0
    position = after
    while True:
        rows = await fetch(position, chunk)
        for row, view in zip(rows, await views(rows), strict=True):
            scanned += 1
            position = position_of(row)
            if matches(view):
                items.append(view)
                if len(items) == limit:
                    return Page(items, encode_cursor(position))
            if scanned >= scan_limit:
                return Page(items, encode_cursor(position), search_truncated=True)
        if len(rows) < chunk:
            return Page(items, None)
