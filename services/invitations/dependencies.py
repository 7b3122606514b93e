"""What the invitations routes share: their dependencies, and how a write or a read runs.

Writes run in one store transaction together with their Idempotency-Key answer
(see ``eventkit.http.idempotency``); rule violations become problem documents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse

from eventkit.http.auth import Principal, require_permission
from eventkit.http.idempotency import fingerprint_request
from eventkit.http.problems import FORBIDDEN, Problem
from eventkit.store import Transaction
from services.invitations.consistency import BadPosition, wait_until_seen, wanted_position
from services.invitations.problems import invalid_field, problem_for
from services.invitations.runtime import InvitationsService

ManageInvitations = Annotated[Principal, Depends(require_permission("manage_invitations"))]
KeyReader = Annotated[Principal, Depends(require_permission("read_personal_data_keys"))]
Answer = tuple[int, dict[str, Any], dict[str, str]]


async def _service(request: Request) -> InvitationsService:  # async: no worker thread
    service = request.app.state.invitations
    assert isinstance(service, InvitationsService)
    return service


Service = Annotated[InvitationsService, Depends(_service)]


def acting_person(principal: Principal) -> UUID:
    """Invitations are made by people: the subject of their token is their user id."""
    try:
        return UUID(principal.subject)
    except ValueError:
        raise Problem(type_=FORBIDDEN, detail="only a person can manage invitations") from None


async def run_command(
    request: Request,
    service: InvitationsService,
    principal: Principal,
    key: str | None,
    idempotency: Any,
    work: Callable[[Transaction], Awaitable[Answer]],
) -> Response:
    fingerprint = await fingerprint_request(request, principal.subject)
    try:
        async with service.store.transaction() as tx:
            if key is not None:
                previous = await idempotency.claim(tx.connection, key, fingerprint)
                if previous is not None:
                    return previous.to_response(replayed=True)  # type: ignore[no-any-return]
            status, body, headers = await work(tx)
            if key is not None:
                await idempotency.remember(tx.connection, key, status, body, headers)
    except Problem:
        raise
    except Exception as error:
        problem = problem_for(error)
        if problem is None:
            raise
        raise problem from error
    return JSONResponse(body, status_code=status, headers=headers)


async def run_read(
    service: InvitationsService, read: Callable[[Transaction], Awaitable[Any]]
) -> Any:
    try:
        async with service.store.transaction() as tx:
            return await read(tx)
    except Exception as error:
        problem = problem_for(error)
        if problem is None:
            raise
        raise problem from error


async def settle(
    service: InvitationsService, query: str | None, header: str | None
) -> tuple[str | None, bool | None]:
    """Wait (bounded) for the position asked for; returns it and whether it was reached."""
    try:
        wanted, event_id = wanted_position(query, header)
    except BadPosition as error:
        raise invalid_field(str(error), error.field, where=error.where) from error
    if event_id is None:
        return None, None
    reached = await wait_until_seen(
        service.store.pool, event_id, consumer=service.consumer_group,
        within=service.settings.read_wait_seconds,
    )
    return wanted, reached
