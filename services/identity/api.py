"""The identity service's HTTP routes: parse, call a handler, answer. Errors are problems."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from eventkit.http.auth import CurrentPrincipal, Principal, require_permission
from eventkit.http.idempotency import Idempotency, IdempotencyKey, fingerprint_request
from eventkit.http.problems import (
    FORBIDDEN,
    NOT_FOUND,
    PROBLEM_MEDIA_TYPE,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    Problem,
)
from eventkit.personal_data import encode_key
from schemas.roles import Role, RoleAssignment, RoleScope
from services.identity.account_handlers import AccountHandlers
from services.identity.audit_timeline import TimelineSource
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
    UpdateProfile,
    password_problem,
)
from services.identity.export import ExportUnavailable, collect_export
from services.identity.problems import PURPOSE_REQUIRED, WEAK_PASSWORD
from services.identity.queries import held_data, profile
from services.identity.responses import DataExport
from services.identity.service_clients import ServiceClients
from services.identity.session_handlers import SessionHandlers

PURPOSE_PATTERN = r"^[a-z][a-z0-9_]{0,99}$"


@dataclass(frozen=True, slots=True)
class IdentityHandlers:
    accounts: AccountHandlers
    sessions: SessionHandlers
    service_clients: ServiceClients
    password_min_length: int
    # Where the data export reads the person's events, and how long it waits for them.
    timeline: TimelineSource
    export_wait: float


def _handlers(request: Request) -> IdentityHandlers:
    handlers = request.app.state.identity
    assert isinstance(handlers, IdentityHandlers)
    return handlers


Handlers = Annotated[IdentityHandlers, Depends(_handlers)]
Purpose = Annotated[
    str | None,
    Header(alias="X-Purpose", pattern=PURPOSE_PATTERN,
           description="Why personal data is read, e.g. support_ticket; recorded."),
]

# Module-level: routes' annotations are resolved in this module's namespace.
SettingsManager = Annotated[Principal, Depends(require_permission("manage_platform_settings"))]
UserManager = Annotated[Principal, Depends(require_permission("manage_platform_users"))]
PersonDeleter = Annotated[Principal, Depends(require_permission("delete_person"))]
PersonReader = Annotated[Principal, Depends(require_permission("read_person"))]
PersonUpdater = Annotated[Principal, Depends(require_permission("update_person"))]
KeyReader = Annotated[Principal, Depends(require_permission("read_personal_data_keys"))]

_EXPORT_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {
    "description": "The audit log cannot give every event on the person right now; "
                   "see Retry-After. No partial export is given.",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}}


def _user(principal: Principal) -> UUID:
    try:
        return UUID(principal.subject)
    except ValueError:
        raise Problem(type_=FORBIDDEN, detail="this needs a person's token") from None


def _check_password(h: IdentityHandlers, password: str, email: str | None, field: str) -> None:
    problem = password_problem(password, email, h.password_min_length)
    if problem is not None:
        raise Problem(type_=WEAK_PASSWORD, detail=f"{field} {problem}", field=field)


async def _write(
    request: Request, h: IdentityHandlers, *, principal: Principal | None, key: str | None,
    idempotency: Idempotency, status: int, run: Callable[[], Awaitable[dict[str, Any]]],
) -> Response:
    """Run a command; with an Idempotency-Key its answer commits in the command's transaction.

    The same key and body answer the first answer again (``Idempotent-Replayed``);
    the same key with another body is a 422.
    """
    if key is None:
        return JSONResponse(await run(), status_code=status)
    fingerprint = await fingerprint_request(request, principal.subject if principal else None)
    async with h.accounts.work.command() as tx:
        previous = await idempotency.claim(tx.connection, key, fingerprint)
        if previous is not None:
            return previous.to_response(replayed=True)
        body = await run()
        stored = await idempotency.remember(tx.connection, key, status, body)
    return stored.to_response()


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["identity"])

    @router.post("/users", status_code=201)
    async def register_user(
        command: RegisterUser, request: Request, h: Handlers, key: IdempotencyKey,
        idempotency: Idempotency,
    ) -> Response:
        _check_password(h, command.password.get_secret_value(), command.email, "password")

        async def run() -> dict[str, Any]:
            registered = await h.accounts.register(command)
            return {"user_id": str(registered.user_id), "status": registered.status.value,
                    **registered.written.body()}

        return await _write(request, h, principal=None, key=key, idempotency=idempotency,
                            status=201, run=run)

    @router.post("/users/confirm")
    async def confirm_email(command: ConfirmEmail, h: Handlers) -> dict[str, Any]:
        user_id, written = await h.accounts.confirm(command.token)
        return {"user_id": str(user_id), "status": "active", **written.body()}

    @router.get("/platform/settings")
    async def get_platform_settings(
        h: Handlers, _: SettingsManager
    ) -> dict[str, Any]:
        async with h.accounts.work.store.transaction() as tx:
            current, version = await h.accounts.platform_settings(tx)
        return {**current.model_dump(mode="json"), "version": version}

    @router.put("/platform/settings")
    async def put_platform_settings(
        body: PlatformSettingsBody, request: Request, h: Handlers, principal: SettingsManager,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        by = _user(principal)

        async def run() -> dict[str, Any]:
            async with h.accounts.work.transaction() as tx:
                event, written = await h.accounts.change_platform_settings(
                    tx, body.model_dump(), by=by
                )
            return {**event.model_dump(mode="json"), **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    # -- sessions -----------------------------------------------------------------

    @router.post("/sessions", status_code=201)
    async def sign_in(command: SignIn, request: Request, h: Handlers) -> dict[str, object]:
        tokens = await h.sessions.sign_in(
            email=command.email, password=command.password.get_secret_value(),
            client_address=request.client.host if request.client else None,
        )
        return tokens.body(h.sessions.work.clock())

    @router.post("/sessions/refresh")
    async def refresh(command: RefreshSession, h: Handlers) -> dict[str, object]:
        tokens = await h.sessions.refresh(command.refresh_token)
        return tokens.body(h.sessions.work.clock())

    @router.delete("/sessions/current", status_code=204)
    async def sign_out(principal: CurrentPrincipal, h: Handlers) -> Response:
        if principal.session_id is None:
            raise Problem(type_=UNAUTHORIZED, detail="the token names no session")
        await h.sessions.sign_out(user_id=_user(principal),
                                  session_id=UUID(principal.session_id))
        return Response(status_code=204)

    @router.post("/me/password", status_code=204)
    async def change_password(
        command: ChangePassword, principal: CurrentPrincipal, h: Handlers
    ) -> Response:
        _check_password(h, command.new_password.get_secret_value(), None, "new_password")
        await h.sessions.change_password(
            _user(principal), command.current_password.get_secret_value(),
            command.new_password.get_secret_value(),
        )
        return Response(status_code=204)

    @router.post("/password-resets", status_code=202)
    async def request_password_reset(command: RequestPasswordReset, h: Handlers) -> Response:
        await h.sessions.request_reset(command.email)
        return Response(status_code=202)

    @router.post("/password-resets/confirm", status_code=204)
    async def reset_password(command: ResetPassword, h: Handlers) -> Response:
        _check_password(h, command.new_password.get_secret_value(), None, "new_password")
        await h.sessions.reset_password(command.token, command.new_password.get_secret_value())
        return Response(status_code=204)

    # -- staff actions ------------------------------------------------------------

    @router.post("/users/{user_id}/suspend")
    async def suspend(
        user_id: UUID, command: SuspendUser, request: Request, h: Handlers,
        principal: UserManager, key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        by = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.suspend(user_id, command, by=by)
            return {"user_id": str(user_id), "status": "suspended", **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    @router.post("/users/{user_id}/reactivate")
    async def reactivate(
        user_id: UUID, request: Request, h: Handlers, principal: UserManager,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        by = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.reactivate(user_id, by=by)
            return {"user_id": str(user_id), "status": "active", **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    @router.delete("/users/{user_id}")
    async def delete_user(
        user_id: UUID, request: Request, h: Handlers,
        principal: PersonDeleter, command: Annotated[DeleteUser, Body()],
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        by = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.delete(user_id, command, by=by)
            return {"user_id": str(user_id), "status": "deleted", **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    @router.post("/users/{user_id}/roles", status_code=201)
    async def grant_role(
        user_id: UUID, command: GrantRole, request: Request, h: Handlers,
        principal: CurrentPrincipal, key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        by = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.grant(user_id, command, by=by)
            return {"user_id": str(user_id), **command.model_dump(mode="json"),
                    **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=201, run=run)

    @router.delete("/users/{user_id}/roles/{scope}/{role}")
    async def revoke_role(
        user_id: UUID, scope: RoleScope, role: Role, request: Request, h: Handlers,
        principal: CurrentPrincipal, key: IdempotencyKey, idempotency: Idempotency,
        community_id: Annotated[UUID | None, Query()] = None,
    ) -> Response:
        try:
            assignment = RoleAssignment(role=role, scope=scope, community_id=community_id)
        except ValueError as error:
            raise Problem(type_="validation-error", detail=str(error), field="role") from None
        by = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.revoke(user_id, assignment, by=by)
            return {"user_id": str(user_id), **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    # -- personal data ------------------------------------------------------------

    @router.get("/users/{user_id}")
    async def read_user(
        user_id: UUID, h: Handlers, principal: PersonReader, purpose: Purpose = None,
    ) -> dict[str, Any]:
        if purpose is None:
            raise Problem(type_=PURPOSE_REQUIRED, field="X-Purpose",
                          detail="send X-Purpose: why you read this person's data")
        work = h.accounts.work
        async with work.store.transaction() as tx:
            shown = await profile(work, tx, user_id)
            await work.viewed(tx, actor=_user(principal), subject=user_id,
                              fields=("email", "name", "locale"),
                              endpoint="GET /v1/users/{user_id}", purpose=purpose)
        return shown

    @router.patch("/users/{user_id}")
    async def update_user(
        user_id: UUID, command: UpdateProfile, request: Request, h: Handlers,
        principal: PersonUpdater, key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        by = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.update_profile(user_id, command, by=by)
            return {"user_id": str(user_id), **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    @router.get("/me")
    async def me(
        principal: CurrentPrincipal, h: Handlers, purpose: Purpose = None
    ) -> dict[str, Any]:
        user_id = _user(principal)
        work = h.accounts.work
        async with work.store.transaction() as tx:
            shown = await profile(work, tx, user_id)
            await work.viewed(tx, actor=user_id, subject=user_id,
                              fields=("email", "name", "locale"), endpoint="GET /v1/me",
                              purpose=purpose or "self_service")
        return shown

    @router.patch("/me")
    async def update_me(
        command: UpdateProfile, request: Request, principal: CurrentPrincipal, h: Handlers,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        user_id = _user(principal)

        async def run() -> dict[str, Any]:
            written = await h.accounts.update_profile(user_id, command, by=user_id)
            return {"user_id": str(user_id), **written.body()}

        return await _write(request, h, principal=principal, key=key, idempotency=idempotency,
                            status=200, run=run)

    @router.get("/me/export", responses=_EXPORT_UNAVAILABLE, response_model=DataExport,
                summary="Everything Guestlist holds on you, from every service (GDPR)")
    async def export_me(principal: CurrentPrincipal, h: Handlers) -> Response:
        user_id = _user(principal)
        work = h.accounts.work
        async with work.store.transaction() as tx:
            held = await held_data(work, tx, user_id)
        try:
            document = await collect_export(held, h.timeline, registry=work.registry,
                                            generated_at=work.clock(), wait=h.export_wait)
        except ExportUnavailable as error:
            raise Problem(type_=SERVICE_UNAVAILABLE, detail=str(error),
                          headers={"Retry-After": str(error.retry_after)}) from error
        body = document.model_dump_json()
        # Recorded only now that the whole document is ready to be handed out.
        async with work.transaction() as tx:
            await h.accounts.exported(tx, user_id)
        return Response(body, media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="guestlist-{user_id}.json"'})

    @router.post("/me/deletion-request", status_code=202)
    async def request_deletion(principal: CurrentPrincipal, h: Handlers) -> dict[str, Any]:
        written, delete_after = await h.accounts.request_deletion(_user(principal))
        return {"delete_after": delete_after.isoformat(), **written.body()}

    # -- service clients ------------------------------------------------------------

    @router.post("/service-tokens")
    async def service_token(command: ServiceTokenRequest, h: Handlers) -> dict[str, Any]:
        return await h.service_clients.token(command)

    @router.get("/internal/personal-data-keys/{subject_id}")
    async def personal_data_key(
        subject_id: UUID, h: Handlers, principal: KeyReader, purpose: Purpose = None,
    ) -> dict[str, str]:
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
        return {"subject_id": str(subject_id), "key": encode_key(found.key)}

    return router


def build_jwks_router() -> APIRouter:
    router = APIRouter(tags=["keys"])

    @router.get("/.well-known/jwks.json")
    async def jwks(request: Request) -> dict[str, Any]:
        keys: dict[str, Any] = await request.app.state.signing_keys.jwks()
        return keys

    return router
