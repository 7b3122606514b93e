"""The outbox relay: moves committed events to Kafka, never skipping, in order per stream.

A crash between Kafka's acknowledgement and ``mark_published`` republishes
that batch on restart; consumers deduplicate by ``ce_id``, which is what
makes delivery exactly-once in effect.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from eventkit.publisher import Publisher
from eventkit.store import Outbox

log = structlog.get_logger(__name__)


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

    async def publish_once(self) -> int:
        """Publish one batch of pending events; return how many went out."""
        batch = await self._outbox.pending(self._batch_size)
        if not batch:
            return 0
        await self._publisher.publish([event.envelope.to_kafka(event.topic) for event in batch])
        await self._outbox.mark_published([event.position for event in batch])
        self.published += len(batch)
        return len(batch)

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish until ``stopping`` is set; on errors, wait and take leadership again."""
        while not stopping.is_set():
            try:
                async with self._outbox.leadership():
                    while not stopping.is_set():
                        if await self.publish_once() < self._batch_size:
                            await _sleep_unless(stopping, self._idle_interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Broker or database away: nothing was marked published, so the
                # batch goes out again once they are back.
                log.exception("outbox relay failed; retrying")
                await _sleep_unless(stopping, self._retry_interval)


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
