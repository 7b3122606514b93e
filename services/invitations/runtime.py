"""What the invitations service runs on: its store, handlers, scheduler, bulk worker, limits.

Built once by the composition root; the store opens with eventkit's runtime
(inside the app's lifespan), and the scheduler and bulk worker run as long
as the app does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from eventkit.http.auth import RevokedSessions
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventRegistry
from eventkit.runtime import ServiceRuntime
from eventkit.store import Clock
from services.invitations.bulk import BulkWorker
from services.invitations.handlers import InvitationHandlers
from services.invitations.lookup_limit import lookup_limit
from services.invitations.scheduler import InvitationScheduler
from services.invitations.secrets import ServiceSecrets
from services.invitations.settings import InvitationsSettings


class InvitationsService:
    def __init__(
        self,
        settings: InvitationsSettings,
        runtime: ServiceRuntime,
        *,
        registry: EventRegistry,
        clock: Clock,
        consumer_group: str,
        revoked_sessions: RevokedSessions,
    ) -> None:
        self.settings = settings
        self.registry = registry
        # Whose processed events count as seen by this service's reads (min_position).
        self.consumer_group = consumer_group
        # Tokens refused after identity ended their sessions (fed from identity.user).
        self.revoked_sessions = revoked_sessions
        self.clock = clock
        self._runtime = runtime
        self._store: PostgresEventStore | None = None
        self.handlers = InvitationHandlers(
            registry=registry, secrets=ServiceSecrets.from_settings(settings),
            settings=settings, clock=clock,
        )
        self.lookup_limit = lookup_limit(settings.lookup_rate_limit, settings.lookup_rate_window)
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
            self._store = self._runtime.store.with_clock(self.clock)
            self._bulk = BulkWorker(self._store, self.handlers, clock=self.clock)
            self._scheduler = InvitationScheduler(
                self._store, self.handlers, clock=self.clock, batch=self.settings.scheduler_batch,
                lookup_limit=self.lookup_limit,
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
