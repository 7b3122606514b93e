"""The outbox relay: moves committed events to Kafka, never skipping, in order per stream.

A crash between Kafka's acknowledgement and ``mark_published`` republishes
that batch on restart; consumers deduplicate by ``ce_id``, which is what
makes delivery exactly-once in effect.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind

from eventkit.envelope import KafkaRecord
from eventkit.publisher import Publisher
from eventkit.store import Outbox, OutgoingEvent
from eventkit.telemetry import context_from_traceparent

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("eventkit.relay")
# OpenTelemetry keeps at most 128 links per span by default.
_MAX_LINKS = 128


class OutboxRelay:
    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        batch_size: int = 500,
        idle_interval: float = 0.05,
        retry_interval: float = 1.0,
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._retry_interval = retry_interval
        self.published = 0
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """New events were committed: look now rather than after ``idle_interval``."""
        self._woken.set()

    async def _send(self, batch: list[OutgoingEvent]) -> None:
        # One producer span per batch, linked to the requests that caused its events
        # (a span per event would cost the hot path more than the send itself). The
        # messages keep their request's traceparent, so consumers join that trace.
        links = [
            Link(span_context)
            for event in batch[:_MAX_LINKS]
            if (span_context := _span_context(event.record)) is not None
        ]
        with _tracer.start_as_current_span(
            "outbox publish", kind=SpanKind.PRODUCER, links=links,
            attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(batch)},
        ):
            await self._publisher.publish([event.record for event in batch])

    async def publish_once(self) -> int:
        """Publish one batch of pending events; return how many went out."""
        batch = await self._outbox.pending(self._batch_size)
        if not batch:
            return 0
        await self._send(batch)
        await self._outbox.mark_published([event.position for event in batch])
        self.published += len(batch)
        return len(batch)

    async def publish_pending(self) -> int:
        """Publish until the outbox is empty; return how many went out.

        While Kafka acknowledges one batch, the database deletes the previous
        batch and reads the next. A batch is sent only after the one before it
        was acknowledged, so a failure can never let a later event of a stream
        overtake an earlier one.
        """
        total = 0
        acknowledged: list[int] = []
        batch = await self._outbox.pending(self._batch_size)
        while batch:
            sending = asyncio.ensure_future(self._send(batch))
            try:
                if acknowledged:
                    await self._outbox.mark_published(acknowledged)
                following = await self._outbox.pending(
                    self._batch_size, after=batch[-1].position
                )
            finally:
                await sending
            acknowledged = [event.position for event in batch]
            total += len(batch)
            self.published += len(batch)
            batch = following
        if acknowledged:
            await self._outbox.mark_published(acknowledged)
        return total

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish until ``stopping`` is set; on errors, wait and take leadership again."""
        while not stopping.is_set():
            try:
                async with self._outbox.leadership():
                    while not stopping.is_set():
                        self._woken.clear()  # what is committed from here on is looked for
                        if not await self.publish_pending():
                            await _sleep_unless(stopping, self._idle_interval, self._woken)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Broker or database away: nothing unacknowledged was marked
                # published, so those events go out again once they are back.
                log.exception("outbox relay failed; retrying")
                await _sleep_unless(stopping, self._retry_interval)


def _span_context(record: KafkaRecord) -> SpanContext | None:
    for name, value in record.headers:
        if name == "traceparent":
            parent = context_from_traceparent(value.decode())
            span_context = trace.get_current_span(parent).get_span_context()
            return span_context if span_context.is_valid else None
    return None


async def _sleep_unless(stopping: asyncio.Event, seconds: float,
                        woken: asyncio.Event | None = None) -> None:
    """Sleep ``seconds``, less if ``stopping`` (or ``woken``) is set meanwhile."""
    if woken is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
        return
    waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(woken.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
