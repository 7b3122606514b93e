"""Password-reset requests per client address, counted in PostgreSQL for every replica.

A fixed window per client, as the invitations service limits its public code
lookups: each request adds one to the row of (keyed hash of the address, start
of the current window) in one upsert and learns the count it reached. The
count does not depend on the e-mail asked for, so a 429 says nothing about
whether an address has an account. Windows that ended are deleted by the
scheduler (``purge``). The per-account limit on mails is the scheduler's
(``domain.ResetMailPolicy``); this one only slows a client spraying addresses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventkit.http.problems import TOO_MANY_REQUESTS, Problem

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_COUNT = (
    "INSERT INTO reset_request_windows AS w (client_hash, window_start, hits) "
    "VALUES ($1, $2, 1) ON CONFLICT (client_hash, window_start) "
    "DO UPDATE SET hits = w.hits + 1 RETURNING hits"
)


def window_of(now: datetime, length: timedelta) -> tuple[datetime, int]:
    """The start of the window ``now`` falls in, and the whole seconds until it ends (>= 1)."""
    start = _EPOCH + ((now - _EPOCH) // length) * length
    return start, max(1, math.ceil((start + length - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class ResetRequestLimit:
    limit: int
    window: timedelta

    async def check(self, pool: Any, *, client_hash: str, now: datetime) -> None:
        """Count this request; a 429 with Retry-After once the client used up its window."""
        start, retry_after = window_of(now, self.window)
        hits: int = await pool.fetchval(_COUNT, client_hash, start)
        if hits > self.limit:
            raise Problem(type_=TOO_MANY_REQUESTS, detail="too many reset requests; slow down",
                          headers={"Retry-After": str(retry_after)}, retry_after=retry_after)

    async def purge(self, connection: Any, *, now: datetime) -> None:
        """Delete the windows that ended."""
        start, _ = window_of(now, self.window)
        await connection.execute("DELETE FROM reset_request_windows WHERE window_start < $1",
                                 start)
