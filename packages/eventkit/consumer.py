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
original message goes to ``<group>.dlq`` and the partition moves on.
Partitions are processed concurrently, each one strictly in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import structlog
from prometheus_client import CollectorRegistry

from eventkit.consumer_health import ConsumerLagCheck, ConsumerMetrics
from eventkit.dlq import dead_letter, dead_letter_topic
from eventkit.envelope import Envelope, EnvelopeError
from eventkit.kafka_client import (
    ConsumerClient,
    KafkaConsumerClient,
    KafkaMessageSink,
    MessageSink,
    Partition,
    ReceivedMessage,
)
from eventkit.store import Clock, EventStore, Transaction, utc_now

log = structlog.get_logger(__name__)

Handler = Callable[[Envelope, Transaction], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler for an event no retry can fix: it goes to the DLQ at once."""


class Outcome(StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one message, after the store committed and before its offset is."""

    message: ReceivedMessage
    envelope: Envelope | None
    outcome: Outcome


HandledHook = Callable[[Handled], Awaitable[None]]


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

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.retry_max_delay, self.retry_base_delay * 2 ** (attempt - 1)))


@dataclass(eq=False)
class _Epoch:
    """One assignment: set when its partitions are revoked, so work on them stops."""

    revoked: asyncio.Event = field(default_factory=asyncio.Event)


class _Abandoned(Exception):
    """The message in hand was given up (stop or revocation); it will be redelivered."""


class ConsumerRunner:
    """Runs one consumer group member until told to stop."""

    def __init__(
        self,
        *,
        group: str,
        client: ConsumerClient,
        store: EventStore,
        handler: Handler,
        dead_letters: MessageSink,
        settings: ConsumerSettings | None = None,
        metrics: ConsumerMetrics | None = None,
        on_handled: HandledHook | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.group = group
        self._client = client
        self._store = store
        self._handler = handler
        self._dead_letters = dead_letters
        self._settings = settings or ConsumerSettings()
        self._metrics = metrics or ConsumerMetrics(CollectorRegistry())
        self._on_handled = on_handled
        self._clock = clock
        self._epoch = _Epoch()
        self._busy: dict[Partition, asyncio.Lock] = {}
        self._next: dict[Partition, int] = {}  # next offset to process, for lag
        self._pending: dict[Partition, int] = {}  # processed, offset not yet committed
        self._uncommitted = 0
        self._commit_lock = asyncio.Lock()
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._running = False
        self.processed = self.skipped = self.dead_lettered = 0

    @property
    def running(self) -> bool:
        return self._running

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
        for message in batch:
            if stopping.is_set() or epoch.revoked.is_set():
                return  # the rest is fetched again from the committed offset
            async with lock:
                try:
                    await self._handle(message, epoch, stopping)
                except _Abandoned:
                    return
                self._next[partition] = self._pending[partition] = message.offset + 1
                self._uncommitted += 1
            if self._uncommitted >= self._settings.commit_every:
                await self._commit()

    async def _handle(
        self, message: ReceivedMessage, epoch: _Epoch, stopping: asyncio.Event
    ) -> None:
        try:
            envelope = Envelope.from_kafka(message.key, message.value, message.headers)
        except EnvelopeError as error:
            await self._dead_letter(message, None, error, attempts=1)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await self._apply(envelope)
            except PermanentError as error:
                await self._dead_letter(message, envelope, error, attempts=attempt)
                return
            except Exception as error:
                if attempt >= self._settings.retry_attempts:
                    await self._dead_letter(message, envelope, error, attempts=attempt)
                    return
                delay = self._settings.retry_delay(attempt)
                self._metrics.retries.labels(self.group).inc()
                log.warning("handler failed; retrying", group=self.group, event_id=str(envelope.id),
                            type=envelope.type, attempt=attempt, delay=delay, error=repr(error))
                if await _wait_for_any(delay, stopping, epoch.revoked):
                    raise _Abandoned from error
                continue
            outcome = Outcome.APPLIED if applied else Outcome.SKIPPED
            if applied:
                self.processed += 1
                self._metrics.processed.labels(self.group).inc()
            else:
                self.skipped += 1
                self._metrics.skipped.labels(self.group).inc()
            await self._notify(Handled(message, envelope, outcome))
            return

    async def _apply(self, envelope: Envelope) -> bool:
        """The inbox mark and the handler's effect commit together or not at all."""
        async with self._store.transaction() as tx:
            if not await tx.record_processed(self.group, envelope.id):
                return False
            await self._handler(envelope, tx)
        return True

    async def _dead_letter(
        self,
        message: ReceivedMessage,
        envelope: Envelope | None,
        error: Exception,
        *,
        attempts: int,
    ) -> None:
        # A failed send raises: the offset stays unmarked and the message comes back.
        await self._dead_letters.send(
            dead_letter(message, group=self.group, error=error, attempts=attempts, at=self._clock())
        )
        self.dead_lettered += 1
        self._metrics.dead_lettered.labels(self.group).inc()
        log.error("message dead-lettered", group=self.group, topic=message.topic,
                  partition=message.partition, offset=message.offset, attempts=attempts,
                  event_id=str(envelope.id) if envelope else None, error=repr(error))
        await self._notify(Handled(message, envelope, Outcome.DEAD_LETTERED))

    async def _notify(self, handled: Handled) -> None:
        if self._on_handled is None:
            return
        try:
            await self._on_handled(handled)
        except Exception:
            # The effect is committed whatever an observer thinks of it.
            log.exception("on_handled hook failed", group=self.group)

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


async def _wait_for_any(timeout: float, *events: asyncio.Event) -> bool:
    """Sleep up to ``timeout``; True as soon as any event is set."""
    if any(event.is_set() for event in events):
        return True
    waiters = [asyncio.create_task(event.wait()) for event in events]
    done, pending = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
    for waiter in pending:
        waiter.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return bool(done)


def kafka_consumer(
    *,
    bootstrap_servers: str,
    group: str,
    store: EventStore,
    handler: Handler,
    topics: Sequence[str] = (),
    pattern: str | None = None,
    settings: ConsumerSettings | None = None,
    metrics: ConsumerMetrics | None = None,
    on_handled: HandledHook | None = None,
    dlq_replication_factor: int = 1,
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
    )
