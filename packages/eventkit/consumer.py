"""Consumers that apply each event exactly once in effect.

For every message, in this order:

1. parse the CloudEvent (a message that is not one goes straight to the DLQ);
2. in ONE store transaction, record the event id in the group's inbox and, if
   it was new, run the handler (which writes its effect through the same
   transaction) — a redelivered event finds its id and changes nothing;
3. only after that transaction committed, mark the offset; offsets go to
   Kafka in batches, on partition revocation and on shutdown.

A crash anywhere before 3 means redelivery, and step 2 makes redelivery
harmless. Handler failures are retried with exponential backoff, then the
original message goes to ``<group>.dlq`` and the partition moves on (steps 1
and 2, retries and the DLQ live in ``eventkit.inbox``). Partitions are
processed concurrently, each one strictly in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry

from eventkit.consumer_health import ConsumerLagCheck, ConsumerMetrics
from eventkit.dlq import dead_letter_topic
from eventkit.inbox import (
    Abandoned,
    BatchHandler,
    BatchResult,
    Delivery,
    Handled,
    HandledHook,
    Handler,
    Inbox,
    Outcome,
    PermanentError,
    RetryPolicy,
)
from eventkit.kafka_client import (
    ConsumerClient,
    KafkaConsumerClient,
    KafkaMessageSink,
    MessageSink,
    Partition,
    ReceivedMessage,
)
from eventkit.store import Clock, EventStore, utc_now

__all__ = [
    "BatchHandler",
    "ConsumerRunner",
    "ConsumerSettings",
    "Delivery",
    "Handled",
    "HandledHook",
    "Handler",
    "Outcome",
    "PermanentError",
    "kafka_consumer",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    retry_attempts: int = 5
    retry_base_delay: float = 0.2
    retry_max_delay: float = 5.0
    commit_every: int = 100
    commit_interval: float = 1.0
    poll_timeout: float = 0.2
    max_poll_records: int = 500
    lag_refresh_interval: float = 1.0

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.retry_attempts, self.retry_base_delay, self.retry_max_delay)


@dataclass(eq=False)
class _Epoch:
    """One assignment: set when its partitions are revoked, so work on them stops."""

    revoked: asyncio.Event = field(default_factory=asyncio.Event)


class ConsumerRunner:
    """Runs one consumer group member until told to stop."""

    def __init__(
        self,
        *,
        group: str,
        client: ConsumerClient,
        store: EventStore,
        handler: Handler | None = None,
        dead_letters: MessageSink,
        settings: ConsumerSettings | None = None,
        metrics: ConsumerMetrics | None = None,
        on_handled: HandledHook | None = None,
        clock: Clock = utc_now,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.group = group
        self._client = client
        self._dead_letters = dead_letters
        self._settings = settings or ConsumerSettings()
        self._metrics = metrics or ConsumerMetrics(CollectorRegistry())
        self._inbox = Inbox(
            group=group, store=store, handler=handler, dead_letters=dead_letters,
            retry=self._settings.retry, metrics=self._metrics, clock=clock, on_handled=on_handled,
            batch_handler=batch_handler,
        )
        self._epoch = _Epoch()
        self._busy: dict[Partition, asyncio.Lock] = {}
        self._next: dict[Partition, int] = {}  # next offset to process, for lag
        self._pending: dict[Partition, int] = {}  # processed, offset not yet committed
        self._uncommitted = 0
        self._commit_lock = asyncio.Lock()
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def processed(self) -> int:
        return self._inbox.processed

    @property
    def skipped(self) -> int:
        return self._inbox.skipped

    @property
    def dead_lettered(self) -> int:
        return self._inbox.dead_lettered

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set: finish the message in hand, commit, leave."""
        await self._dead_letters.start()
        try:
            await self._dead_letters.ensure_topic(dead_letter_topic(self.group))
            try:
                await self._client.start(self)
                self._running = True
                log.info("consumer started", group=self.group)
                await self._consume(stopping)
            finally:
                self._running = False
                await self._commit()
                await self._client.stop()
                log.info("consumer stopped", group=self.group, processed=self.processed,
                         skipped=self.skipped, dead_lettered=self.dead_lettered)
        finally:
            await self._dead_letters.stop()

    def assignment(self) -> set[Partition]:
        return self._client.assignment()

    async def lag(self) -> int:
        """Messages behind the partitions' ends, over the whole assignment."""
        return sum((await self.partition_lags()).values())

    async def partition_lags(self) -> dict[Partition, int]:
        """Per assigned partition whose end is known: end minus next offset to process."""
        lags: dict[Partition, int] = {}
        for partition in self._client.assignment():
            high = self._client.highwater(partition)
            position = self._next.get(partition)
            if position is None:
                position = await self._client.position(partition)
            if high is not None and position is not None:
                lags[partition] = max(0, high - position)
        self._metrics.export_lag(self.group, lags)
        return lags

    def readiness_check(self, *, max_lag: int = 1000) -> ConsumerLagCheck:
        """For /readyz: not ready when stopped or more than ``max_lag`` behind."""
        return ConsumerLagCheck(self, max_lag=max_lag)

    # PartitionListener: called by the client during a rebalance.
    async def partitions_revoked(self, partitions: set[Partition]) -> None:
        # aiokafka rebalances eagerly: every partition is revoked and, once reassigned,
        # fetched again from its committed offset, so all batches in hand are dropped.
        revoked_epoch, self._epoch = self._epoch, _Epoch()
        revoked_epoch.revoked.set()
        for partition in partitions:
            lock = self._busy.get(partition)
            if lock is not None:
                async with lock:  # wait for the message in hand
                    pass
        await self._commit()
        for partition in partitions:
            self._pending.pop(partition, None)
            self._next.pop(partition, None)
        self._metrics.export_lag(self.group, {})

    async def partitions_assigned(self, partitions: set[Partition]) -> None:
        for partition in partitions:
            self._next.pop(partition, None)
        log.info("partitions assigned", group=self.group,
                 partitions=sorted(f"{p.topic}/{p.partition}" for p in partitions))

    async def _consume(self, stopping: asyncio.Event) -> None:
        settings = self._settings
        while not stopping.is_set():
            messages = await self._client.poll(
                timeout=settings.poll_timeout, max_records=settings.max_poll_records
            )
            epoch = self._epoch  # no await since poll returned: these belong to it
            by_partition: dict[Partition, list[ReceivedMessage]] = {}
            for message in messages:
                by_partition.setdefault(message.where, []).append(message)
            await self._drain_all(by_partition, epoch, stopping)
            if self._uncommitted and (
                time.monotonic() - self._last_commit >= settings.commit_interval
            ):
                await self._commit()
            if time.monotonic() - self._last_lag >= settings.lag_refresh_interval:
                self._last_lag = time.monotonic()
                await self.lag()

    async def _drain_all(
        self,
        by_partition: dict[Partition, list[ReceivedMessage]],
        epoch: _Epoch,
        stopping: asyncio.Event,
    ) -> None:
        if len(by_partition) <= 1:
            for partition, batch in by_partition.items():
                await self._drain(partition, batch, epoch, stopping)
            return
        tasks = [
            asyncio.create_task(self._drain(partition, batch, epoch, stopping))
            for partition, batch in by_partition.items()
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One partition failed (its DLQ write, say): stop the others too.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _drain(
        self,
        partition: Partition,
        batch: Sequence[ReceivedMessage],
        epoch: _Epoch,
        stopping: asyncio.Event,
    ) -> None:
        lock = self._busy.setdefault(partition, asyncio.Lock())
        if batch:
            self._next[partition] = batch[0].offset
        together = BatchResult(applied=False)
        if len(batch) > 1 and not (stopping.is_set() or epoch.revoked.is_set()):
            async with lock:
                together = await self._inbox.process_together(batch)
                if together.applied:
                    self._next[partition] = self._pending[partition] = batch[-1].offset + 1
                    self._uncommitted += len(batch)
            if together.applied:
                if self._uncommitted >= self._settings.commit_every:
                    await self._commit()
                return
        for message in batch:
            if stopping.is_set() or epoch.revoked.is_set():
                return  # the rest is fetched again from the committed offset
            async with lock:
                try:
                    await self._inbox.process(
                        message,
                        interrupted=(stopping, epoch.revoked),
                        attempts_made=together.attempts_made(message),
                    )
                except Abandoned:
                    return
                self._next[partition] = self._pending[partition] = message.offset + 1
                self._uncommitted += 1
            if self._uncommitted >= self._settings.commit_every:
                await self._commit()

    async def _commit(self) -> None:
        async with self._commit_lock:
            assigned = self._client.assignment()
            offsets = {p: o for p, o in self._pending.items() if p in assigned}
            if not offsets:
                return
            try:
                await self._client.commit(offsets)
            except Exception:
                # Only costs a redelivery, which the inbox turns into a skip.
                log.warning("offset commit failed", group=self.group, exc_info=True)
                return
            for partition, offset in offsets.items():
                if self._pending.get(partition) == offset:
                    del self._pending[partition]
            self._uncommitted = 0
            self._last_commit = time.monotonic()


def kafka_consumer(
    *,
    bootstrap_servers: str,
    group: str,
    store: EventStore,
    handler: Handler | None = None,
    topics: Sequence[str] = (),
    pattern: str | None = None,
    settings: ConsumerSettings | None = None,
    metrics: ConsumerMetrics | None = None,
    on_handled: HandledHook | None = None,
    dlq_replication_factor: int = 1,
    batch_handler: BatchHandler | None = None,
) -> ConsumerRunner:
    """A runner on aiokafka, subscribed to ``topics`` or a ``pattern`` (anchored at the start)."""
    return ConsumerRunner(
        group=group,
        client=KafkaConsumerClient(
            bootstrap_servers, group, topics=topics, pattern=pattern, client_id=group
        ),
        store=store,
        handler=handler,
        dead_letters=KafkaMessageSink(
            bootstrap_servers, client_id=f"{group}.dlq", replication_factor=dlq_replication_factor
        ),
        settings=settings,
        metrics=metrics,
        on_handled=on_handled,
        batch_handler=batch_handler,
    )
