"""Read-your-writes for every read: wait for ``min_position``, then say what was served.

A read names the position of a command it wants to see (``?min_position=``
or ``X-Min-Position``). The read waits, up to ``READ_WAIT_SECONDS``, until the
serving version of the read model processed that event, then answers either
way: ``consistency.reached`` (and the ``X-Min-Position-Reached`` header) says
whether it got there, ``consistency.position`` (``X-Position``) names the
last event the read model had applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, Query, Request, Response
from pydantic import BaseModel, Field

from eventkit.position import InvalidPosition, event_id_of
from services.projections import readmodels
from services.projections.context import ProjectionsContext, context_of
from services.projections.problems import invalid

POSITION_HEADER = "X-Position"
REACHED_HEADER = "X-Min-Position-Reached"
VERSION_HEADER = "X-Read-Model-Version"
EXPOSED_HEADERS = (POSITION_HEADER, REACHED_HEADER, VERSION_HEADER)


class Consistency(BaseModel):
    read_model: str
    version: int = Field(description="The version of the read model that answered.")
    position: str | None = Field(description="The last event the read model had applied.")
    min_position: str | None = Field(description="The position asked for, if any.")
    reached: bool | None = Field(
        description="Whether min_position was processed before answering; null if none asked."
    )


MinPosition = Annotated[str | None, Query(
    max_length=100, description="Wait (a bounded time) until this command's position is applied.")]
MinPositionHeader = Annotated[str | None, Header(alias="X-Min-Position", max_length=100)]


def consistent_read(read_model: str) -> Callable[..., Awaitable[Consistency]]:
    """A route dependency: waits for min_position, sets the headers, answers Consistency."""

    async def consistency(
        request: Request, response: Response, min_position: MinPosition = None,
        x_min_position: MinPositionHeader = None,
    ) -> Consistency:
        context = context_of(request)
        wanted = min_position or x_min_position
        if wanted is not None:
            try:
                event_id_of(wanted)
            except InvalidPosition as error:
                field = "min_position" if min_position else "X-Min-Position"
                raise invalid(field, str(error),
                              where="query" if min_position else "header") from error
        return await settle(context, read_model, wanted, response)

    return consistency


async def settle(
    context: ProjectionsContext, read_model: str, wanted: str | None, response: Response
) -> Consistency:
    pool = context.runtime.store.pool
    version = await readmodels.active_version(pool, read_model)
    reached: bool | None = None
    if wanted is not None:
        group = context.projector.group(read_model, version)
        reached = await context.waits.wait(group, wanted,
                                           within=context.settings.read_wait_seconds)
    position = await readmodels.last_position(pool, read_model, version)
    response.headers[VERSION_HEADER] = str(version)
    if position is not None:
        response.headers[POSITION_HEADER] = position
    if reached is not None:
        response.headers[REACHED_HEADER] = "true" if reached else "false"
    return Consistency(read_model=read_model, version=version, position=position,
                       min_position=wanted, reached=reached)
