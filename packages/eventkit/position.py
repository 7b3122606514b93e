"""Read-your-writes: the opaque position a command answers with, and waiting for it.

Kafka offsets are unknown when a command commits, so the token names the
command's last event. A read model has reached it once its consumer recorded
that event as processed (applied or skipped), which the inbox already says.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from uuid import UUID

from eventkit.store import EventStore, RecordedEvent

_PREFIX = "p1."


class InvalidPosition(ValueError):
    """A ``min_position`` that no command of ours produced."""


def position_of(event: RecordedEvent) -> str:
    return position_of_id(event.envelope.id)


def position_of_id(event_id: UUID) -> str:
    """The token of the event ``event_id``, as a reader that saw it on Kafka names it."""
    return _PREFIX + base64.urlsafe_b64encode(event_id.bytes).rstrip(b"=").decode()


def event_id_of(position: str) -> UUID:
    if not position.startswith(_PREFIX):
        raise InvalidPosition("unknown position format")
    body = position[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return UUID(bytes=raw)
    except (binascii.Error, ValueError) as error:
        raise InvalidPosition("malformed position") from error


async def wait_for_position(
    store: EventStore, consumer: str, position: str, *, within: float, poll: float = 0.02
) -> bool:
    """True once ``consumer`` processed the event behind ``position``; False after ``within`` s."""
    event_id = event_id_of(position)
    deadline = time.monotonic() + within
    while not await store.is_processed(consumer, event_id):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


class PositionWaits:
    """Many reads waiting for their positions, answered by one question per change.

    A read registers the event behind its ``min_position`` and sleeps; one
    checker asks the store which of all the awaited events their consumers
    have processed, whenever ``changed()`` says a consumer committed something
    (a LISTEN/NOTIFY, or the consumer in this process) and at the latest every
    ``poll`` seconds (a missed notification only delays, never strands, a
    read). So the database sees one query per change, not one per waiting
    read per poll: with a hundred reads waiting, polling each at 20 ms would
    be 5,000 queries a second on the server the consumers write to.

    ``store`` is called when a question is put, so a service can build this
    before its lifespan opens the store.
    """

    def __init__(self, store: Callable[[], EventStore], *, poll: float = 0.5) -> None:
        self._store = store
        self._poll = poll
        self._waiting: dict[str, dict[UUID, list[asyncio.Future[bool]]]] = {}
        self._changed = asyncio.Event()
        # The consumers to ask about at the next look; None: every one with reads waiting.
        self._dirty: set[str] | None = set()
        self._checker: asyncio.Task[None] | None = None

    def changed(self, consumer: str | None = None) -> None:
        """``consumer`` (or some consumer, if None) committed: look again now.

        Naming the consumer spares the question for the others: several read
        models commit for each event, and reads usually wait on one of them.
        """
        if consumer is None:
            self._dirty = None
        elif consumer not in self._waiting:
            return  # no read waits on it
        elif self._dirty is not None:
            self._dirty.add(consumer)
        self._changed.set()

    async def wait(self, consumer: str, position: str, *, within: float) -> bool:
        """True once ``consumer`` processed the event at ``position``; False after ``within``."""
        event_id = event_id_of(position)
        reached: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(consumer, {}).setdefault(event_id, []).append(reached)
        self.changed(consumer)  # the first look includes this read, batched with any others
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check(), name="position-waits")
        try:
            return await asyncio.wait_for(asyncio.shield(reached), timeout=within)
        except TimeoutError:
            return False
        finally:
            self._forget(consumer, event_id, reached)

    def _forget(self, consumer: str, event_id: UUID, reached: asyncio.Future[bool]) -> None:
        by_event = self._waiting.get(consumer, {})
        futures = by_event.get(event_id, [])
        if reached in futures:
            futures.remove(reached)
        if not futures:
            by_event.pop(event_id, None)
        if not by_event:
            self._waiting.pop(consumer, None)

    async def _check(self) -> None:
        try:
            while self._waiting:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=self._poll)
                    dirty, self._dirty = self._dirty, set()
                except TimeoutError:
                    dirty, self._dirty = None, set()  # the poll: everyone
                self._changed.clear()
                for consumer, by_event in list(self._waiting.items()):
                    if dirty is not None and consumer not in dirty:
                        continue
                    for event_id in await self._store().processed_among(consumer, list(by_event)):
                        for reached in by_event.get(event_id, []):
                            if not reached.done():
                                reached.set_result(True)
        except Exception as error:
            # The store failed: every read waiting now hears it; the next read starts afresh.
            for by_event in self._waiting.values():
                for futures in by_event.values():
                    for reached in futures:
                        if not reached.done():
                            reached.set_exception(error)
