"""Routes that show or change a person's data: staff reads and edits, and the person's own.

Every answer that shows personal data leaves a ``PersonalDataViewed`` with its
purpose; the data export leaves ``UserDataExported`` once it is whole.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from eventkit.http.auth import CurrentPrincipal, Principal
from eventkit.http.problems import PROBLEM_MEDIA_TYPE, SERVICE_UNAVAILABLE, Problem
from eventkit.http.purpose import Purpose
from services.identity.commands import UpdateProfile
from services.identity.dependencies import (
    Commands,
    Handlers,
    IdentityHandlers,
    PersonReader,
    PersonUpdater,
    acting_user,
)
from services.identity.export import ExportUnavailable, collect_export
from services.identity.problems import PURPOSE_REQUIRED
from services.identity.queries import PROFILE_FIELDS, held_data, profile
from services.identity.responses import DataExport, DeletionScheduled, Profile, UserWritten

_EXPORT_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {
    "description": "The audit log cannot give every event on the person right now; "
                   "see Retry-After. No partial export is given.",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}}


async def _show_profile(
    h: IdentityHandlers, *, actor: UUID, subject: UUID, endpoint: str, purpose: str
) -> Profile:
    work = h.accounts.work
    async with work.store.transaction() as tx:
        shown = await profile(work, tx, subject)
        await work.viewed(tx, actor=actor, subject=subject, fields=PROFILE_FIELDS,
                          endpoint=endpoint, purpose=purpose)
    return Profile.model_validate(shown)


async def _update_profile(
    commands: Commands, principal: Principal, user_id: UUID, command: UpdateProfile
) -> Response:
    by = acting_user(principal)

    async def run() -> UserWritten:
        written = await commands.handlers.accounts.update_profile(user_id, command, by=by)
        return UserWritten(user_id=user_id, **written.body())

    return await commands.answer(run, principal=principal)


def build_personal_data_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["personal data"])

    @router.get("/users/{user_id}", response_model=Profile)
    async def read_user(
        user_id: UUID, h: Handlers, principal: PersonReader, purpose: Purpose = None,
    ) -> Profile:
        if purpose is None:
            raise Problem(type_=PURPOSE_REQUIRED, field="X-Purpose",
                          detail="send X-Purpose: why you read this person's data")
        return await _show_profile(h, actor=acting_user(principal), subject=user_id,
                                   endpoint="GET /v1/users/{user_id}", purpose=purpose)

    @router.patch("/users/{user_id}", response_model=UserWritten)
    async def update_user(
        user_id: UUID, command: UpdateProfile, principal: PersonUpdater, commands: Commands,
    ) -> Response:
        return await _update_profile(commands, principal, user_id, command)

    @router.get("/me", response_model=Profile)
    async def me(principal: CurrentPrincipal, h: Handlers, purpose: Purpose = None) -> Profile:
        user_id = acting_user(principal)
        return await _show_profile(h, actor=user_id, subject=user_id, endpoint="GET /v1/me",
                                   purpose=purpose or "self_service")

    @router.patch("/me", response_model=UserWritten)
    async def update_me(
        command: UpdateProfile, principal: CurrentPrincipal, commands: Commands,
    ) -> Response:
        return await _update_profile(commands, principal, acting_user(principal), command)

    @router.get("/me/export", responses=_EXPORT_UNAVAILABLE, response_model=DataExport,
                summary="Everything Guestlist holds on you, from every service (GDPR)")
    async def export_me(principal: CurrentPrincipal, h: Handlers) -> Response:
        user_id = acting_user(principal)
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

    @router.post("/me/deletion-request", status_code=202, response_model=DeletionScheduled)
    async def request_deletion(principal: CurrentPrincipal, h: Handlers) -> DeletionScheduled:
        written, delete_after = await h.accounts.request_deletion(acting_user(principal))
        return DeletionScheduled(delete_after=delete_after, **written.body())

    return router
