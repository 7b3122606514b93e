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
