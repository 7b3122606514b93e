"""The public code lookup's limit per client address, shared by every replica.

Fixed windows let a client spend up to twice the limit across a window
boundary; against 192-bit codes that changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from eventkit.rate_limit import ClientWindowLimit


def lookup_limit(limit: int, window: timedelta) -> ClientWindowLimit:
    return ClientWindowLimit("lookup_windows", limit, window,
                             detail="too many lookups; slow down")
