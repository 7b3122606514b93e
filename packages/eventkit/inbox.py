"""One message, applied exactly once in effect, or parked in the DLQ.

The inbox is the ``processed_events`` table (or its in-memory twin): in ONE
store transaction the event id is recorded for the consumer group and, only
if it was new, the handler writes its effect. Both commit or neither does,
so a redelivered event changes nothing and a failed attempt leaves nothing
behind. Handler failures are retried with exponential backoff; after the
last attempt, or at once for a ``PermanentError`` or a message that is not a
CloudEvent, the original message goes to ``<group>.dlq``. A store that is
down is waited for instead: an outage must not empty the topic into the DLQ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from eventkit.consumer_health import ConsumerMetrics
from eventkit.dlq import dead_letter
from eventkit.envelope import Envelope, EnvelopeError
from eventkit.kafka_client import MessageSink, ReceivedMessage
from eventkit.store import Clock, EventStore, Transaction
from eventkit.telemetry import context_from_traceparent

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("eventkit.consumer")

Handler = Callable[[Envelope, Transaction], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message and the event it carries, as a batch handler receives them."""

    message: ReceivedMessage
    envelope: Envelope


# Applies the new events of a batch in one go (one INSERT for all, say), in
# offset order, inside the inbox's transaction; a single message comes as a list of one.
BatchHandler = Callable[[Sequence[Delivery], Transaction], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler for an event no retry can fix: it goes to the DLQ at once."""


class Abandoned(Exception):
    """The message in hand was given up (stop or revocation); it will be redelivered."""


class _HandlerFailed(Exception):
    """The handler raised ``error``; told apart from failures of the store around it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


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
class BatchResult:
    applied: bool
    # The event whose handler raised, when that is why the batch was not applied.
    failed_event: UUID | None = None

    def attempts_made(self, message: ReceivedMessage) -> int:
        """1 for the message whose handler already failed once in the batch, else 0."""
        if self.failed_event is None:
            return 0
        ce_id = dict(message.headers).get("ce_id", b"").decode(errors="replace")
        return 1 if ce_id == str(self.failed_event) else 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class Inbox:
    """Processes messages for one consumer group; counts what became of them."""

    def __init__(
        self,
        *,
        group: str,
        store: EventStore,
        handler: Handler | None = None,
        dead_letters: MessageSink,
        retry: RetryPolicy,
        metrics: ConsumerMetrics,
        clock: Clock,
        on_handled: HandledHook | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give a handler or a batch handler, not both or neither")
        self.group = group
        self._store = store
        self._handler = handler
        self._batch_handler = batch_handler
        self._dead_letters = dead_letters
        self._retry = retry
        self._metrics = metrics
        self._clock = clock
        self._on_handled = on_handled
        self.processed = self.skipped = self.dead_lettered = 0

    async def process(
        self,
        message: ReceivedMessage,
        *,
        interrupted: Sequence[asyncio.Event] = (),
        attempts_made: int = 0,
    ) -> Outcome:
        """Apply, skip or dead-letter ``message``; raise Abandoned if interrupted in a backoff.

        A failed DLQ write raises too: the message must not be marked done.
        """
        try:
            envelope = Envelope.from_kafka(message.key, message.value, message.headers)
        except EnvelopeError as error:
            return await self._dead_letter(message, None, error, attempts=1)
        attempt, outage = attempts_made, 0
        while True:
            try:
                applied = await self._apply(message, envelope)
            except _HandlerFailed as failure:
                attempt += 1
                cause = failure.error
                if isinstance(cause, PermanentError) or attempt >= self._retry.attempts:
                    return await self._dead_letter(message, envelope, cause, attempts=attempt)
                delay = self._retry.delay(attempt)
                self._metrics.retries.labels(self.group).inc()
                log.warning("handler failed; retrying", group=self.group, event_id=str(envelope.id),
                            type=envelope.type, attempt=attempt, delay=delay, error=repr(cause))
                if await _wait_for_any(delay, interrupted):
                    raise Abandoned from cause
                continue
            except Exception as error:
                # The store itself failed (no connection, commit refused): not the event's
                # fault, so no attempt is used up and it never goes to the DLQ for it.
                outage += 1
                delay = self._retry.delay(outage)
                log.warning("store unavailable; waiting", group=self.group,
                            event_id=str(envelope.id), delay=delay, error=repr(error))
                if await _wait_for_any(delay, interrupted):
                    raise Abandoned from error
                continue
            outcome = Outcome.APPLIED if applied else Outcome.SKIPPED
            self._count(outcome)
            await self._notify(Handled(message, envelope, outcome))
            return outcome

    async def process_together(self, messages: Sequence[ReceivedMessage]) -> BatchResult:
        """Apply a run of messages in ONE transaction; if any part fails, nothing is done.

        The usual case (events that parse, a handler that succeeds) then costs
        one inbox statement and one commit per batch instead of per event. On
        a failure the caller goes message by message, with retries and the DLQ;
        the failed handler call counts as the first attempt of its event.
        """
        try:
            envelopes = [Envelope.from_kafka(m.key, m.value, m.headers) for m in messages]
        except EnvelopeError:
            return BatchResult(applied=False)
        outcomes: list[Outcome] = []
        failing: UUID | None = None
        try:
            async with self._store.transaction() as tx:
                new = await tx.record_processed_many(self.group, [e.id for e in envelopes])
                if self._batch_handler is not None:
                    outcomes = await self._run_batch_handler(messages, envelopes, new, tx)
                else:
                    for envelope in envelopes:
                        # The relay can repeat an event, even inside one batch: apply it once.
                        if envelope.id in new:
                            new.discard(envelope.id)
                            failing = envelope.id
                            await self._run_handler(envelope, tx)
                            failing = None
                            outcomes.append(Outcome.APPLIED)
                        else:
                            outcomes.append(Outcome.SKIPPED)
        except Exception as error:
            log.info("batch not applied; going one by one", group=self.group,
                     size=len(messages), error=repr(error))
            return BatchResult(applied=False, failed_event=failing)
        for message, envelope, outcome in zip(messages, envelopes, outcomes, strict=True):
            self._count(outcome)
            await self._notify(Handled(message, envelope, outcome))
        return BatchResult(applied=True)

    async def _run_batch_handler(
        self,
        messages: Sequence[ReceivedMessage],
        envelopes: Sequence[Envelope],
        new: set[UUID],
        tx: Transaction,
    ) -> list[Outcome]:
        # Which event of the batch failed is unknown here: one by one will tell.
        assert self._batch_handler is not None
        outcomes: list[Outcome] = []
        fresh: list[Delivery] = []
        for message, envelope in zip(messages, envelopes, strict=True):
            # The relay can repeat an event, even inside one batch: apply it once.
            if envelope.id in new:
                new.discard(envelope.id)
                fresh.append(Delivery(message, envelope))
                outcomes.append(Outcome.APPLIED)
            else:
                outcomes.append(Outcome.SKIPPED)
        if fresh:
            with _tracer.start_as_current_span(
                f"consume batch of {len(fresh)}",
                kind=SpanKind.CONSUMER,
                attributes={"messaging.consumer.group.name": self.group,
                            "messaging.batch.message_count": len(fresh)},
            ):
                await self._batch_handler(fresh, tx)
        return outcomes

    async def _apply(self, message: ReceivedMessage, envelope: Envelope) -> bool:
        async with self._store.transaction() as tx:
            if not await tx.record_processed(self.group, envelope.id):
                return False
            try:
                if self._batch_handler is not None:
                    with _tracer.start_as_current_span(
                        f"consume {envelope.type}",
                        context=context_from_traceparent(envelope.traceparent),
                        kind=SpanKind.CONSUMER,
                        attributes={"messaging.consumer.group.name": self.group,
                                    "cloudevents.event_id": str(envelope.id)},
                    ):
                        await self._batch_handler([Delivery(message, envelope)], tx)
                else:
                    await self._run_handler(envelope, tx)
            except Exception as error:
                raise _HandlerFailed(error) from error  # still inside: the transaction rolls back
        return True

    async def _run_handler(self, envelope: Envelope, tx: Transaction) -> None:
        # The span continues the trace of the request that caused the event.
        with _tracer.start_as_current_span(
            f"consume {envelope.type}",
            context=context_from_traceparent(envelope.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.consumer.group.name": self.group,
                        "cloudevents.event_id": str(envelope.id)},
        ):
            assert self._handler is not None
            await self._handler(envelope, tx)

    def _count(self, outcome: Outcome) -> None:
        if outcome is Outcome.APPLIED:
            self.processed += 1
            self._metrics.processed.labels(self.group).inc()
        elif outcome is Outcome.SKIPPED:
            self.skipped += 1
            self._metrics.skipped.labels(self.group).inc()

    async def _dead_letter(
        self,
        message: ReceivedMessage,
        envelope: Envelope | None,
        error: Exception,
        *,
        attempts: int,
    ) -> Outcome:
        await self._dead_letters.send(
            dead_letter(message, group=self.group, error=error, attempts=attempts, at=self._clock())
        )
        self.dead_lettered += 1
        self._metrics.dead_lettered.labels(self.group).inc()
        log.error("message dead-lettered", group=self.group, topic=message.topic,
                  partition=message.partition, offset=message.offset, attempts=attempts,
                  event_id=str(envelope.id) if envelope else None, error=repr(error))
        await self._notify(Handled(message, envelope, Outcome.DEAD_LETTERED))
        return Outcome.DEAD_LETTERED

    async def _notify(self, handled: Handled) -> None:
        if self._on_handled is None:
            return
        try:
            await self._on_handled(handled)
        except Exception:
            # The effect is committed whatever an observer thinks of it.
            log.exception("on_handled hook failed", group=self.group)


async def _wait_for_any(timeout: float, events: Sequence[asyncio.Event]) -> bool:
    """Sleep up to ``timeout``; True as soon as any of ``events`` is set."""
    if any(event.is_set() for event in events):
        return True
    if not events:
        await asyncio.sleep(timeout)
        return False
    waiters = [asyncio.create_task(event.wait()) for event in events]
    done, pending = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
    for waiter in pending:
        waiter.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return bool(done)
