"""What the invitations service runs on: its store, handlers, scheduler, bulk worker, limits.

Built once by the composition root; the store opens with eventkit's runtime
(inside the app's lifespan), and the scheduler and bulk worker run as long
as the app does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from eventkit.http.problems import TOO_MANY_REQUESTS, Problem
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventRegistry
from eventkit.runtime import ServiceRuntime
from eventkit.store import Clock
from services.invitations.bulk import BulkWorker
from services.invitations.handlers import InvitationHandlers
from services.invitations.scheduler import InvitationScheduler
from services.invitations.secrets import ServiceSecrets
from services.invitations.settings import InvitationsSettings


class LookupLimit:
    """Public code lookups per client address in a sliding window (per replica, in memory).

    Enough to make guessing codes pointless next to their 192 bits; a shared
    limit across replicas would need shared state, which this does not pay for.
    """

    def __init__(
        self, *, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def check(self, client: str) -> None:
        now = self._clock()
        if len(self._seen) > 100_000:  # bounded memory under a flood of addresses
            self._seen.clear()
        recent = self._seen.setdefault(client, deque())
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._limit:
            wait = max(1, math.ceil(recent[0] + self._window - now))
            raise Problem(type_=TOO_MANY_REQUESTS, detail="too many lookups; slow down",
                          headers={"Retry-After": str(wait)}, retry_after=wait)
        recent.append(now)


class InvitationsService:
    def __init__(
        self,
        settings: InvitationsSettings,
        runtime: ServiceRuntime,
        *,
        registry: EventRegistry,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._runtime = runtime
        self._store: PostgresEventStore | None = None
        self.handlers = InvitationHandlers(
            registry=registry, secrets=ServiceSecrets.from_settings(settings),
            settings=settings, clock=clock,
        )
        self.lookup_limit = LookupLimit(
            limit=settings.lookup_rate_limit,
            window=settings.lookup_rate_window.total_seconds(),
        )
        self._bulk: BulkWorker | None = None
        self._scheduler: InvitationScheduler | None = None

    @property
    def store(self) -> PostgresEventStore:
        if self._store is None:
            raise RuntimeError("the store opens with the service's lifespan")
        return self._store

    @property
    def bulk(self) -> BulkWorker:
        if self._bulk is None:
            raise RuntimeError("the bulk worker runs with the service's lifespan")
        return self._bulk

    @property
    def scheduler(self) -> InvitationScheduler:
        if self._scheduler is None:
            raise RuntimeError("the scheduler runs with the service's lifespan")
        return self._scheduler

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        async with self._runtime.lifespan(app):
            # Our own store on the runtime's pool: the same clock stamps events and decides.
            self._store = PostgresEventStore(self._runtime.database.pool, clock=self.clock)
            self._bulk = BulkWorker(self._store, self.handlers, clock=self.clock)
            self._scheduler = InvitationScheduler(
                self._store, self.handlers, clock=self.clock, batch=self.settings.scheduler_batch
            )
            stopping = asyncio.Event()
            tasks = [
                asyncio.create_task(
                    self._scheduler.run(stopping, interval=self.settings.scheduler_interval),
                    name="invitations-scheduler",
                ),
                asyncio.create_task(self._bulk.run(stopping, idle=1.0), name="invitations-bulk"),
            ]
            try:
                yield
            finally:
                stopping.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._store = None
