"""What runs in a service for its whole life: its database, its outbox relay, its consumers.

The composition root builds one ``ServiceRuntime`` and hands it, its lifespan
and readiness checks to the app factory. Every service verifies tokens, so
every runtime also keeps ``revoked_sessions`` current from identity's events
(``eventkit.revocations``) and the app's token verifier refuses what they
revoke: no service can leave that out. Nothing starts before the lifespan does,
and shutdown stops the consumers and the relay before the pool closes, so no
work is cut off half-way through a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from eventkit.consumer import ConsumerRunner, kafka_consumer
from eventkit.consumer_health import ConsumerLagCheck, ConsumerMetrics
from eventkit.database import ServiceDatabase
from eventkit.http.auth import RevokedSessions
from eventkit.http.readiness import CheckResult, KafkaCheck, ReadinessCheck
from eventkit.metrics import create_registry
from eventkit.outbox import PostgresOutbox
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from eventkit.relay import OutboxRelay
from eventkit.revocations import IDENTITY_USER_TOPIC, revocation_subscription
from eventkit.settings import ServiceSettings
from eventkit.subscription import Subscription

__all__ = ["OutboxBacklogCheck", "ServiceRuntime", "Subscription"]

log = structlog.get_logger(__name__)


class _CurrentRunner:
    """The running consumer of a group, as /readyz sees it; a restarted one replaces it."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.runner: ConsumerRunner | None = None

    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.running

    async def lag(self) -> int:
        return await self.runner.lag() if self.runner is not None else 0


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


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: Sequence[Path] = (),
        registry: CollectorRegistry | None = None,
        subscriptions: Sequence[Subscription] = (),
        max_outbox_backlog: int = 10_000,
        revocations_topic: str = IDENTITY_USER_TOPIC,
    ) -> None:
        self.settings = settings
        self.revoked_sessions = RevokedSessions()
        self.registry = registry or create_registry()
        self.database = ServiceDatabase(
            settings.database_url,
            application_name=f"guestlist-{settings.service_name}",
            migrations=migrations,
        )
        self._subscriptions = (
            *subscriptions,
            revocation_subscription(self.revoked_sessions, service=settings.service_name,
                                    topic=revocations_topic),
        )
        self._current = {sub.group: _CurrentRunner(sub.group) for sub in self._subscriptions}
        self._consumer_metrics = ConsumerMetrics(self.registry)
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
            *(
                ConsumerLagCheck(current, max_lag=self.settings.readiness_max_lag)
                for current in self._current.values()
            ),
        ]

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        async with self.database.lifespan():
            self._store = PostgresEventStore(self.database.pool)
            stopping = asyncio.Event()
            self._relay_task = asyncio.create_task(self._relay(stopping), name="outbox-relay")
            tasks = [
                self._relay_task,
                *(asyncio.create_task(self._consume(sub, stopping), name=f"consumer {sub.group}")
                  for sub in self._subscriptions),
            ]  # fmt: skip
            try:
                yield
            finally:
                stopping.set()
                await _finish(tasks, within=30.0)
                self._store = None

    async def _consume(self, subscription: Subscription, stopping: asyncio.Event) -> None:
        """Keep the group's consumer running; one that fails is rebuilt, not left dead.

        aiokafka clients cannot be restarted, so each attempt gets a fresh one;
        what it had applied is in the inbox, so starting over costs only skips.
        """
        current = self._current[subscription.group]
        while not stopping.is_set():
            runner = kafka_consumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group=subscription.group,
                store=self.store,
                handler=subscription.handler,
                topics=subscription.topics,
                pattern=subscription.pattern,
                settings=subscription.settings,
                metrics=self._consumer_metrics,
                batch_handler=subscription.batch_handler,
            )
            current.runner = runner
            try:
                await runner.run(stopping)
            except Exception as error:
                log.warning("consumer failed; starting a new one", group=subscription.group,
                            error=repr(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=2.0)

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
            self.store.on_appended(relay.wake)
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

