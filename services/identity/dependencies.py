"""What identity's route modules share: their handlers, who may call, and command answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse

from eventkit.http.auth import Principal, require_permission
from eventkit.http.idempotency import Idempotency, IdempotencyKey, fingerprint_request
from eventkit.http.problems import FORBIDDEN, Problem
from services.identity.account_handlers import AccountHandlers
from services.identity.audit_timeline import TimelineSource
from services.identity.commands import password_problem
from services.identity.problems import WEAK_PASSWORD
from services.identity.responses import Answer
from services.identity.service_clients import ServiceClients
from services.identity.session_handlers import SessionHandlers


@dataclass(frozen=True, slots=True)
class IdentityHandlers:
    accounts: AccountHandlers
    sessions: SessionHandlers
    service_clients: ServiceClients
    password_min_length: int
    # Where the data export reads the person's events, and how long it waits for them.
    timeline: TimelineSource
    export_wait: float


async def _handlers(request: Request) -> IdentityHandlers:  # async: no worker thread
    handlers = request.app.state.identity
    assert isinstance(handlers, IdentityHandlers)
    return handlers


Handlers = Annotated[IdentityHandlers, Depends(_handlers)]

SettingsManager = Annotated[Principal, Depends(require_permission("manage_platform_settings"))]
UserManager = Annotated[Principal, Depends(require_permission("manage_platform_users"))]
PersonDeleter = Annotated[Principal, Depends(require_permission("delete_person"))]
PersonReader = Annotated[Principal, Depends(require_permission("read_person"))]
PersonUpdater = Annotated[Principal, Depends(require_permission("update_person"))]
KeyReader = Annotated[Principal, Depends(require_permission("read_personal_data_keys"))]


def acting_user(principal: Principal) -> UUID:
    """The person behind a token; a service's token acts for nobody."""
    try:
        return UUID(principal.subject)
    except ValueError:
        raise Problem(type_=FORBIDDEN, detail="this needs a person's token") from None


def check_password(h: IdentityHandlers, password: str, email: str | None, field: str) -> None:
    problem = password_problem(password, email, h.password_min_length)
    if problem is not None:
        raise Problem(type_=WEAK_PASSWORD, detail=f"{field} {problem}", field=field)


@dataclass(frozen=True, slots=True)
class CommandAnswers:
    """Runs a command; with an Idempotency-Key its answer commits in the command's transaction.

    The same key and body answer the first answer again (``Idempotent-Replayed``);
    the same key with another body is a 422.
    """

    request: Request
    handlers: IdentityHandlers
    key: str | None
    idempotency: Idempotency

    async def answer(
        self, run: Callable[[], Awaitable[Answer]], *, status: int = 200,
        principal: Principal | None = None,
    ) -> Response:
        if self.key is None:
            return JSONResponse((await run()).model_dump(mode="json"), status_code=status)
        fingerprint = await fingerprint_request(
            self.request, principal.subject if principal else None)
        async with self.handlers.accounts.work.command() as tx:
            previous = await self.idempotency.claim(tx.connection, self.key, fingerprint)
            if previous is not None:
                return previous.to_response(replayed=True)
            body = (await run()).model_dump(mode="json")
            stored = await self.idempotency.remember(tx.connection, self.key, status, body)
        return stored.to_response()


async def _command_answers(  # async: no worker thread
    request: Request, h: Handlers, key: IdempotencyKey, idempotency: Idempotency
) -> CommandAnswers:
    return CommandAnswers(request, h, key, idempotency)


Commands = Annotated[CommandAnswers, Depends(_command_answers)]
