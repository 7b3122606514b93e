"""Opaque cursors: the sort key and id of the last row of a page, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from services.projections.problems import invalid


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
