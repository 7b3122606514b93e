"""Read-your-writes for the organizer reads: wait for ``min_position``, then say what was served.

A position names one event (``eventkit.position``). This service has reached
it when the event is in its own store (a command of ours: committed, so
visible at once) or its consumer group processed it (another service's event,
e.g. the registration that accepts an invitation). A read waits up to
``READ_WAIT_SECONDS`` for that, then answers either way: ``reached`` (and the
``X-Min-Position-Reached`` header) says whether it got there, ``position``
(``X-Position``) names the last event of what the answer shows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header, Query, Response
from pydantic import BaseModel, Field

from eventkit.position import InvalidPosition, event_id_of

POSITION_HEADER = "X-Position"
REACHED_HEADER = "X-Min-Position-Reached"
EXPOSED_HEADERS = (POSITION_HEADER, REACHED_HEADER)

MinPosition = Annotated[str | None, Query(
    max_length=100, description="Wait (a bounded time) until this command's event is visible.")]
MinPositionHeader = Annotated[str | None, Header(alias="X-Min-Position", max_length=100)]

_SEEN = (
    "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = $1) "
    "OR EXISTS (SELECT 1 FROM processed_events WHERE consumer = $2 AND event_id = $1)"
)


class Consistency(BaseModel):
    position: str | None = Field(description="The last event of what this answer shows.")
    min_position: str | None = Field(description="The position asked for, if any.")
    reached: bool | None = Field(
        description="Whether min_position was visible before answering; null if none asked."
    )


class BadPosition(ValueError):
    """A min_position no command produced; ``field`` and ``where`` name the input."""

    def __init__(self, message: str, *, field: str, where: str) -> None:
        super().__init__(message)
        self.field = field
        self.where = where


def wanted_position(query: str | None, header: str | None) -> tuple[str | None, UUID | None]:
    """The position asked for (the query wins) and its event id; BadPosition if malformed."""
    wanted = query if query is not None else header
    if wanted is None:
        return None, None
    try:
        return wanted, event_id_of(wanted)
    except InvalidPosition as error:
        field, where = ("min_position", "query") if query is not None else ("X-Min-Position",
                                                                            "header")
        raise BadPosition(str(error), field=field, where=where) from error


async def wait_until_seen(
    pool: Any, event_id: UUID, *, consumer: str, within: float, poll: float = 0.02
) -> bool:
    """True once the event is ours or ``consumer`` processed it; False after ``within`` s."""
    deadline = time.monotonic() + within
    while not await pool.fetchval(_SEEN, event_id, consumer):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


def answer(response: Response, *, position: str | None, wanted: str | None,
           reached: bool | None) -> Consistency:
    if position is not None:
        response.headers[POSITION_HEADER] = position
    if reached is not None:
        response.headers[REACHED_HEADER] = "true" if reached else "false"
    return Consistency(position=position, min_position=wanted, reached=reached)
