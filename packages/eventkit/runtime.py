"""What runs in a service for its whole life: its database, its outbox relay, its consumers.

The composition root builds one ``ServiceRuntime`` and hands its lifespan and
readiness checks to the app factory. Nothing starts before the lifespan does,
and shutdown stops the consumers and the relay before the pool closes, so no
work is cut off half-way through a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from eventkit.database import ServiceDatabase
from eventkit.http.readiness import CheckResult, KafkaCheck, ReadinessCheck
from eventkit.metrics import create_registry
from eventkit.outbox import PostgresOutbox
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from eventkit.relay import OutboxRelay
from eventkit.settings import ServiceSettings

log = structlog.get_logger(__name__)


class BackgroundWork(Protocol):
    """A consumer (or anything) that runs until told to stop."""

    async def run(self, stopping: asyncio.Event) -> None: ...


class OutboxBacklogCheck:
    """Ready while the outbox holds fewer than ``max_backlog`` unpublished events."""

    name = "outbox"

    def __init__(self, runtime: ServiceRuntime, *, max_backlog: int, gauge: Gauge) -> None:
        self._runtime = runtime
        self._max_backlog = max_backlog
        self._gauge = gauge

    async def __call__(self) -> CheckResult:
        backlog = await self._runtime.database.pool.fetchval("SELECT count(*) FROM outbox")
        self._gauge.set(backlog)
        ok = backlog < self._max_backlog and self._runtime.relay_running
        state = "relay running" if self._runtime.relay_running else "relay stopped"
        return CheckResult(self.name, ok, f"{backlog} events waiting for Kafka; {state}")


ConsumerFactory = Callable[[PostgresEventStore], Sequence[BackgroundWork]]


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: Sequence[Path] = (),
        registry: CollectorRegistry | None = None,
        consumers: ConsumerFactory | None = None,
        max_outbox_backlog: int = 10_000,
    ) -> None:
        self.settings = settings
        self.registry = registry or create_registry()
        self.database = ServiceDatabase(
            settings.database_url,
            application_name=f"guestlist-{settings.service_name}",
            migrations=migrations,
        )
        self._consumer_factory = consumers
        self._max_outbox_backlog = max_outbox_backlog
        self._relay_task: asyncio.Task[None] | None = None
        self._store: PostgresEventStore | None = None
        self._backlog = Gauge(
            "eventkit_outbox_backlog", "Committed events not yet acknowledged by Kafka",
            registry=self.registry,
        )

    @property
    def store(self) -> PostgresEventStore:
        if self._store is None:
            raise RuntimeError("the store opens with the service's lifespan")
        return self._store

    @property
    def relay_running(self) -> bool:
        return self._relay_task is not None and not self._relay_task.done()

    def readiness_checks(self) -> list[ReadinessCheck]:
        return [
            self.database.readiness_check(),
            KafkaCheck(self.settings.kafka_bootstrap),
            OutboxBacklogCheck(self, max_backlog=self._max_outbox_backlog, gauge=self._backlog),
        ]

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        async with self.database.lifespan():
            self._store = PostgresEventStore(self.database.pool)
            workers = list(self._consumer_factory(self._store)) if self._consumer_factory else []
            stopping = asyncio.Event()
            self._relay_task = asyncio.create_task(self._relay(stopping), name="outbox-relay")
            tasks = [
                self._relay_task,
                *(asyncio.create_task(w.run(stopping), name=f"consumer-{i}")
                  for i, w in enumerate(workers)),
            ]  # fmt: skip
            try:
                yield
            finally:
                stopping.set()
                await _finish(tasks, within=30.0)
                self._store = None

    async def _relay(self, stopping: asyncio.Event) -> None:
        """Run the relay; a broker that is not up yet is waited for, not fatal.

        The service still starts and serves (commands commit to the outbox);
        ``/readyz`` says Kafka is missing until the relay connects.
        """
        while not stopping.is_set():
            # A fresh producer per attempt: aiokafka clients are not restartable.
            publisher = KafkaPublisher(
                self.settings.kafka_bootstrap, client_id=f"{self.settings.service_name}-relay"
            )
            try:
                await publisher.start()
                break
            except KafkaError as error:
                log.warning("Kafka not reachable; the relay will try again", error=str(error))
                await publisher.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=2.0)
        else:
            return
        try:
            relay = OutboxRelay(PostgresOutbox(self.settings.database_dsn), publisher)
            await relay.run(stopping)
        finally:
            await publisher.stop()


async def _finish(tasks: Sequence[asyncio.Task[None]], *, within: float) -> None:
    """Let the tasks end on their own; cancel what is still running after ``within`` s."""
    done, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background task failed", task=task.get_name(), error=repr(error))

