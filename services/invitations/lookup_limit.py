"""The public code lookup's limit per client address, shared by every replica through PostgreSQL.

A fixed window per client: each request adds one to the row of (keyed hash of
the address, start of the current window) in one upsert and learns the count
it reached, so replicas behind a load balancer share one budget. Fixed windows
let a client spend up to twice the limit across a window boundary; against
192-bit codes that changes nothing, and it keeps each request at one statement.
Windows that ended are deleted by the scheduler's pass (``purge``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventkit.http.problems import TOO_MANY_REQUESTS, Problem

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_COUNT = (
    "INSERT INTO lookup_windows AS w (client_hash, window_start, hits) VALUES ($1, $2, 1) "
    "ON CONFLICT (client_hash, window_start) DO UPDATE SET hits = w.hits + 1 "
    "RETURNING hits"
)


def window_of(now: datetime, length: timedelta) -> tuple[datetime, int]:
    """The start of the window ``now`` falls in, and the whole seconds until it ends (>= 1)."""
    elapsed = now - _EPOCH
    start = _EPOCH + (elapsed // length) * length
    left = start + length - now
    return start, max(1, math.ceil(left.total_seconds()))


@dataclass(frozen=True, slots=True)
class LookupLimit:
    limit: int
    window: timedelta

    async def check(self, pool: Any, *, client_hash: str, now: datetime) -> None:
        """Count this lookup; a 429 with Retry-After once the client used up its window."""
        start, retry_after = window_of(now, self.window)
        hits: int = await pool.fetchval(_COUNT, client_hash, start)
        if hits > self.limit:
            raise Problem(type_=TOO_MANY_REQUESTS, detail="too many lookups; slow down",
                          headers={"Retry-After": str(retry_after)}, retry_after=retry_after)

    async def purge(self, pool: Any, *, now: datetime) -> int:
        """Delete the windows that ended; returns how many."""
        start, _ = window_of(now, self.window)
        status: str = await pool.execute("DELETE FROM lookup_windows WHERE window_start < $1",
                                         start)
        return int(status.split()[-1])
