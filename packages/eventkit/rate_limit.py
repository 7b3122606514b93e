"""A request limit per client, shared by every replica through PostgreSQL.

A fixed window per client: each request adds one to the row of (keyed hash of
the client address, start of the current window) in one upsert and learns the
count it reached, so replicas behind a load balancer share one budget. Fixed
windows let a client spend up to twice the limit across a window boundary; in
exchange each request is one statement. The owning service's scheduler deletes
ended windows (``purge``). The table has the columns ``client_hash``,
``window_start`` and ``hits`` with the first two as its key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventkit.http.problems import TOO_MANY_REQUESTS, Problem

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*$")


def window_of(now: datetime, length: timedelta) -> tuple[datetime, int]:
    """The start of the window ``now`` falls in, and the whole seconds until it ends (>= 1)."""
    start = _EPOCH + ((now - _EPOCH) // length) * length
    return start, max(1, math.ceil((start + length - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class ClientWindowLimit:
    table: str
    limit: int
    window: timedelta
    detail: str = "too many requests; slow down"

    def __post_init__(self) -> None:
        if not _TABLE.match(self.table):
            raise ValueError(f"not a table name: {self.table!r}")

    async def check(self, pool: Any, *, client_hash: str, now: datetime) -> None:
        """Count this request; a 429 with Retry-After once the client used up its window."""
        start, retry_after = window_of(now, self.window)
        hits: int = await pool.fetchval(
            f"INSERT INTO {self.table} AS w (client_hash, window_start, hits) "
            "VALUES ($1, $2, 1) ON CONFLICT (client_hash, window_start) "
            "DO UPDATE SET hits = w.hits + 1 RETURNING hits",
            client_hash, start,
        )
        if hits > self.limit:
            raise Problem(type_=TOO_MANY_REQUESTS, detail=self.detail,
                          headers={"Retry-After": str(retry_after)}, retry_after=retry_after)

    async def purge(self, connection: Any, *, now: datetime) -> int:
        """Delete the windows that ended; returns how many."""
        start, _ = window_of(now, self.window)
        status: str = await connection.execute(
            f"DELETE FROM {self.table} WHERE window_start < $1", start
        )
        return int(status.split()[-1])
