"""The identity service's HTTP routes: parse, call a handler, answer. Errors are problems.

Accounts, sessions, staff actions and service clients are here; the routes
that show or change a person's data are in ``personal_data_api``; the
composition root mounts both.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response

from eventkit.http.auth import CurrentPrincipal
from eventkit.http.problems import NOT_FOUND, PROBLEM_MEDIA_TYPE, UNAUTHORIZED, Problem
from eventkit.http.purpose import Purpose
from eventkit.personal_data import encode_key
from schemas.roles import Role, RoleAssignment, RoleScope
from services.identity.account_status import UserStatus
from services.identity.commands import (
    ChangePassword,
    ConfirmEmail,
    DeleteUser,
    GrantRole,
    PlatformSettingsBody,
    RefreshSession,
    RegisterUser,
    RequestPasswordReset,
    ResetPassword,
    ServiceTokenRequest,
    SignIn,
    SuspendUser,
)
from services.identity.dependencies import (
    Commands,
    Handlers,
    KeyReader,
    PersonDeleter,
    SettingsManager,
    UserManager,
    acting_user,
    check_password,
)
from services.identity.handlers import Written
from services.identity.responses import (
    AccountStatus,
    KeySet,
    PersonalDataKey,
    PlatformSettingsView,
    PlatformSettingsWritten,
    RoleGrantedAnswer,
    ServiceToken,
    SessionTokens,
    UserWritten,
)

_TOO_MANY_RESETS: dict[int | str, dict[str, Any]] = {429: {
    "description": "This client asked for too many resets; see Retry-After. The same for "
                   "every address.",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}}


async def _status_after(
    user_id: UUID, status: UserStatus, change: Awaitable[Written]
) -> AccountStatus:
    written = await change
    return AccountStatus(user_id=user_id, status=status, **written.body())


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["identity"])

    @router.post("/users", status_code=201, response_model=AccountStatus)
    async def register_user(command: RegisterUser, h: Handlers, commands: Commands) -> Response:
        check_password(h, command.password.get_secret_value(), command.email, "password")

        async def run() -> AccountStatus:
            registered = await h.accounts.register(command)
            return AccountStatus(user_id=registered.user_id, status=registered.status,
                                 **registered.written.body())

        return await commands.answer(run, status=201)

    @router.post("/users/confirm", response_model=AccountStatus)
    async def confirm_email(command: ConfirmEmail, h: Handlers) -> AccountStatus:
        user_id, written = await h.accounts.confirm(command.token)
        return AccountStatus(user_id=user_id, status=UserStatus.ACTIVE, **written.body())

    @router.get("/platform/settings", response_model=PlatformSettingsView)
    async def get_platform_settings(h: Handlers, _: SettingsManager) -> PlatformSettingsView:
        async with h.accounts.work.store.transaction() as tx:
            current, version = await h.accounts.platform_settings(tx)
        return PlatformSettingsView(**current.model_dump(), version=version)

    @router.put("/platform/settings", response_model=PlatformSettingsWritten)
    async def put_platform_settings(
        body: PlatformSettingsBody, h: Handlers, principal: SettingsManager, commands: Commands,
    ) -> Response:
        by = acting_user(principal)

        async def run() -> PlatformSettingsWritten:
            async with h.accounts.work.transaction() as tx:
                event, written = await h.accounts.change_platform_settings(
                    tx, body.model_dump(), by=by
                )
            return PlatformSettingsWritten(**event.model_dump(), **written.body())

        return await commands.answer(run, principal=principal)

    # -- sessions -----------------------------------------------------------------

    @router.post("/sessions", status_code=201, response_model=SessionTokens)
    async def sign_in(command: SignIn, request: Request, h: Handlers) -> SessionTokens:
        tokens = await h.sessions.sign_in(
            email=command.email, password=command.password.get_secret_value(),
            client_address=request.client.host if request.client else None,
        )
        return SessionTokens.model_validate(tokens.body(h.sessions.work.clock()))

    @router.post("/sessions/refresh", response_model=SessionTokens)
    async def refresh(command: RefreshSession, h: Handlers) -> SessionTokens:
        tokens = await h.sessions.refresh(command.refresh_token)
        return SessionTokens.model_validate(tokens.body(h.sessions.work.clock()))

    @router.delete("/sessions/current", status_code=204, response_class=Response)
    async def sign_out(principal: CurrentPrincipal, h: Handlers) -> Response:
        if principal.session_id is None:
            raise Problem(type_=UNAUTHORIZED, detail="the token names no session")
        await h.sessions.sign_out(user_id=acting_user(principal),
                                  session_id=UUID(principal.session_id))
        return Response(status_code=204)

    @router.post("/me/password", status_code=204, response_class=Response)
    async def change_password(
        command: ChangePassword, principal: CurrentPrincipal, h: Handlers
    ) -> Response:
        check_password(h, command.new_password.get_secret_value(), None, "new_password")
        await h.sessions.change_password(
            acting_user(principal), command.current_password.get_secret_value(),
            command.new_password.get_secret_value(),
        )
        return Response(status_code=204)

    @router.post("/password-resets", status_code=202, response_class=Response,
                 responses=_TOO_MANY_RESETS)
    async def request_password_reset(
        command: RequestPasswordReset, request: Request, h: Handlers
    ) -> Response:
        await h.sessions.request_reset(
            command.email, client_address=request.client.host if request.client else None
        )
        return Response(status_code=202)

    @router.post("/password-resets/confirm", status_code=204, response_class=Response)
    async def reset_password(command: ResetPassword, h: Handlers) -> Response:
        check_password(h, command.new_password.get_secret_value(), None, "new_password")
        await h.sessions.reset_password(command.token, command.new_password.get_secret_value())
        return Response(status_code=204)

    # -- staff actions ------------------------------------------------------------

    @router.post("/users/{user_id}/suspend", response_model=AccountStatus)
    async def suspend(
        user_id: UUID, command: SuspendUser, h: Handlers, principal: UserManager,
        commands: Commands,
    ) -> Response:
        by = acting_user(principal)
        return await commands.answer(lambda: _status_after(
            user_id, UserStatus.SUSPENDED, h.accounts.suspend(user_id, command, by=by)),
            principal=principal)

    @router.post("/users/{user_id}/reactivate", response_model=AccountStatus)
    async def reactivate(
        user_id: UUID, h: Handlers, principal: UserManager, commands: Commands,
    ) -> Response:
        by = acting_user(principal)
        return await commands.answer(lambda: _status_after(
            user_id, UserStatus.ACTIVE, h.accounts.reactivate(user_id, by=by)),
            principal=principal)

    @router.delete("/users/{user_id}", response_model=AccountStatus)
    async def delete_user(
        user_id: UUID, h: Handlers, principal: PersonDeleter,
        command: Annotated[DeleteUser, Body()], commands: Commands,
    ) -> Response:
        by = acting_user(principal)
        return await commands.answer(lambda: _status_after(
            user_id, UserStatus.DELETED, h.accounts.delete(user_id, command, by=by)),
            principal=principal)

    @router.post("/users/{user_id}/roles", status_code=201, response_model=RoleGrantedAnswer)
    async def grant_role(
        user_id: UUID, command: GrantRole, h: Handlers, principal: CurrentPrincipal,
        commands: Commands,
    ) -> Response:
        by = acting_user(principal)

        async def run() -> RoleGrantedAnswer:
            written = await h.accounts.grant(user_id, command, by=by)
            return RoleGrantedAnswer(user_id=user_id, **command.model_dump(), **written.body())

        return await commands.answer(run, status=201, principal=principal)

    @router.delete("/users/{user_id}/roles/{scope}/{role}", response_model=UserWritten)
    async def revoke_role(
        user_id: UUID, scope: RoleScope, role: Role, h: Handlers,
        principal: CurrentPrincipal, commands: Commands,
        community_id: Annotated[UUID | None, Query()] = None,
    ) -> Response:
        try:
            assignment = RoleAssignment(role=role, scope=scope, community_id=community_id)
        except ValueError as error:
            raise Problem(type_="validation-error", detail=str(error), field="role") from None
        by = acting_user(principal)

        async def run() -> UserWritten:
            written = await h.accounts.revoke(user_id, assignment, by=by)
            return UserWritten(user_id=user_id, **written.body())

        return await commands.answer(run, principal=principal)

    # -- service clients ------------------------------------------------------------

    @router.post("/service-tokens", response_model=ServiceToken)
    async def service_token(command: ServiceTokenRequest, h: Handlers) -> ServiceToken:
        return ServiceToken.model_validate(await h.service_clients.token(command))

    @router.get("/internal/personal-data-keys/{subject_id}", response_model=PersonalDataKey)
    async def personal_data_key(
        subject_id: UUID, h: Handlers, principal: KeyReader, purpose: Purpose = None,
    ) -> PersonalDataKey:
        work = h.accounts.work
        reader = UUID(principal.subject)
        async with work.store.transaction() as tx:
            # A delivery key for another client, or expired, answers like an erased key.
            found = await work.data_keys.readable(tx.connection, subject_id, reader=reader,
                                                  now=work.clock())
            if found is None:
                raise Problem(type_=NOT_FOUND, detail="no key: erased or never existed")
            await work.viewed(tx, actor=reader, subject=found.person, fields=(found.field,),
                              endpoint="GET /v1/internal/personal-data-keys/{subject_id}",
                              purpose=purpose or "decrypt_events")
        return PersonalDataKey(subject_id=subject_id, key=encode_key(found.key))

    return router


def build_jwks_router() -> APIRouter:
    router = APIRouter(tags=["keys"])

    @router.get("/.well-known/jwks.json", response_model=KeySet)
    async def jwks(request: Request) -> KeySet:
        return KeySet.model_validate(await request.app.state.signing_keys.jwks())

    return router
