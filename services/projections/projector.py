"""Keeps one consumer running per read model, on the version that serves reads.

The projector registers the read models, then runs the active version of
each as its own consumer group. It looks at ``read_models`` every few
seconds: when a rebuild switched a read model to a new version, it stops the
old version's consumer and carries on with the new one's group, which the
rebuild left at the offsets it had reached. Lag per read model is exported as
a Prometheus gauge and checked by ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from eventkit.consumer import ConsumerRunner, ConsumerSettings, Handled, Outcome, kafka_consumer
from eventkit.http.readiness import CheckResult
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventRegistry
from services.projections import readmodels
from services.projections.readmodels import ReadModel

log = structlog.get_logger(__name__)

# Big polls make big transactions: one inbox statement and one commit per batch.
CONSUMER_SETTINGS = ConsumerSettings(max_poll_records=1000, commit_every=2000, poll_timeout=0.05)
# A rebuild fills tables nobody reads yet, from a backlog: longer transactions hold
# up no reader, and each batch's fixed cost (inbox, checkpoint, commit) is shared by
# five times as many events.
REBUILD_SETTINGS = replace(CONSUMER_SETTINGS, max_poll_records=5000, commit_every=10000)


class ProjectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge("projections_read_model_lag",
                         "Events on the read model's topics not applied yet.",
                         ["read_model"], registry=registry)
        self.version = Gauge("projections_read_model_version",
                             "The version of the read model that serves reads.",
                             ["read_model"], registry=registry)
        self.applied = Counter("projections_events_applied",
                               "Events applied (or found irrelevant) by a read model.",
                               ["read_model"], registry=registry)
        self.failed = Counter("projections_events_failed",
                              "Events a read model set aside in its failed-events table.",
                              ["read_model"], registry=registry)


@dataclass
class _Running:
    version: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    runner: ConsumerRunner | None = None
    task: asyncio.Task[None] | None = None


def consumer_for(
    model: ReadModel, version: int, *, bootstrap: str, group_prefix: str, topics: Sequence[str],
    store: PostgresEventStore, registry: EventRegistry, metrics: ProjectionMetrics | None = None,
    on_handled: Callable[[Handled], Any] | None = None,
    settings: ConsumerSettings = CONSUMER_SETTINGS,
) -> ConsumerRunner:
    """A consumer applying ``topics`` to ``version`` of ``model`` (used by rebuilds too)."""
    failed = (lambda: metrics.failed.labels(model.name).inc()) if metrics else (lambda: None)
    applied = metrics.applied.labels(model.name) if metrics is not None else None  # per event

    async def handled(outcome: Handled) -> None:
        if applied is not None and outcome.outcome is Outcome.APPLIED:
            applied.inc()
        if on_handled is not None:
            await on_handled(outcome)

    return kafka_consumer(
        bootstrap_servers=bootstrap,
        group=readmodels.group_name(group_prefix, model.name, version),
        store=store, topics=topics, settings=settings, on_handled=handled,
        batch_handler=readmodels.batch_handler(model, version, registry, on_failed=failed),
    )


class Projector:
    def __init__(
        self, *, models: Sequence[ReadModel], topics: Sequence[str], bootstrap: str,
        group_prefix: str, registry: EventRegistry, metrics: ProjectionMetrics,
        poll_seconds: float = 1.0, max_lag: int = 1000,
    ) -> None:
        self.models = {model.name: model for model in models}
        self.topics = tuple(topics)
        self.group_prefix = group_prefix
        self._bootstrap = bootstrap
        self._registry = registry
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._max_lag = max_lag
        self._running: dict[str, _Running] = {}

    @property
    def registry(self) -> EventRegistry:
        return self._registry

    def group(self, name: str, version: int) -> str:
        return readmodels.group_name(self.group_prefix, name, version)

    async def run(self, store: PostgresEventStore, stopping: asyncio.Event) -> None:
        async with store.pool.acquire() as connection:
            await readmodels.prepare(connection, list(self.models.values()))
        try:
            while not stopping.is_set():
                try:
                    await self._follow_versions(store)
                    await self._export_lag()
                except (OSError, asyncpg.PostgresError) as error:
                    log.warning("read model versions unavailable", error=repr(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self._poll_seconds)
        finally:
            await asyncio.gather(*(self._stop(name) for name in list(self._running)))

    async def _follow_versions(self, store: PostgresEventStore) -> None:
        rows = await store.pool.fetch("SELECT name, active_version FROM read_models")
        for row in rows:
            model = self.models.get(row["name"])
            if model is None:
                continue
            current = self._running.get(model.name)
            if current is not None and current.version == row["active_version"]:
                continue
            if current is not None:
                log.info("read model switched version", read_model=model.name,
                         old=current.version, new=row["active_version"])
                await self._stop(model.name)
            await self._start(store, model, int(row["active_version"]))

    async def _start(self, store: PostgresEventStore, model: ReadModel, version: int) -> None:
        async with store.pool.acquire() as connection:
            await readmodels.create_version(connection, model, version)
        running = _Running(version)
        running.task = asyncio.create_task(self._consume(store, model, running),
                                           name=f"read model {model.name} v{version}")
        self._running[model.name] = running
        self._metrics.version.labels(model.name).set(version)

    async def _consume(
        self, store: PostgresEventStore, model: ReadModel, running: _Running
    ) -> None:
        # aiokafka clients cannot be restarted: a failed consumer is replaced by a fresh one.
        while not running.stopping.is_set():
            running.runner = consumer_for(
                model, running.version, bootstrap=self._bootstrap,
                group_prefix=self.group_prefix, topics=self.topics, store=store,
                registry=self._registry, metrics=self._metrics,
            )
            try:
                await running.runner.run(running.stopping)
            except Exception as error:
                log.warning("read model consumer failed; starting a new one",
                            read_model=model.name, error=repr(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(running.stopping.wait(), timeout=2.0)

    async def _stop(self, name: str) -> None:
        running = self._running.pop(name, None)
        if running is None or running.task is None:
            return
        running.stopping.set()
        try:
            await asyncio.wait_for(running.task, timeout=30.0)
        except TimeoutError:
            log.error("read model consumer did not stop in time", read_model=name)

    async def _export_lag(self) -> None:
        for name in self._running:
            self._metrics.lag.labels(name).set(await self.lag(name))

    def version_of(self, name: str) -> int | None:
        running = self._running.get(name)
        return running.version if running is not None else None

    def is_running(self, name: str) -> bool:
        running = self._running.get(name)
        return bool(running and running.runner and running.runner.running)

    async def lag(self, name: str) -> int:
        running = self._running.get(name)
        if running is None or running.runner is None:
            return 0
        return await running.runner.lag()

    def readiness_checks(self) -> list[ReadModelCheck]:
        return [ReadModelCheck(self, name, max_lag=self._max_lag) for name in self.models]


class ReadModelCheck:
    """Ready while the read model's consumer runs at most ``max_lag`` events behind."""

    def __init__(self, projector: Projector, read_model: str, *, max_lag: int) -> None:
        self.name = f"read model {read_model}"
        self._projector = projector
        self._read_model = read_model
        self._max_lag = max_lag

    async def __call__(self) -> CheckResult:
        version = self._projector.version_of(self._read_model)
        if version is None or not self._projector.is_running(self._read_model):
            return CheckResult(self.name, False, "not running")
        lag = await self._projector.lag(self._read_model)
        return CheckResult(self.name, lag <= self._max_lag,
                           f"version {version}, lag {lag} (max {self._max_lag})")
