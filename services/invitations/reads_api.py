"""Reads of one invitation by the people who manage invitations: its view, and its URL again.

Each leaves PersonalDataViewed for what it showed of the invitee (``access.py``).
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from eventkit.http.purpose import Purpose
from eventkit.store import Transaction
from services.invitations.access import record_viewed
from services.invitations.consistency import MinPosition, MinPositionHeader, answer
from services.invitations.dependencies import (
    Answer,
    ManageInvitations,
    Service,
    acting_person,
    run_command,
    run_read,
    settle,
)
from services.invitations.queries import InvitationView, invitation_view, shown_in_clear


def add_read_routes(router: APIRouter) -> None:
    @router.get("/invitations/{invitation_id}")
    async def get(
        invitation_id: UUID, response: Response, service: Service, principal: ManageInvitations,
        purpose: Purpose = None, min_position: MinPosition = None,
        x_min_position: MinPositionHeader = None,
    ) -> InvitationView:
        """One invitation; showing the invitee's address leaves PersonalDataViewed."""
        viewer = acting_person(principal)
        wanted, reached = await settle(service, min_position, x_min_position)

        async def read(tx: Transaction) -> tuple[InvitationView, str]:
            view, position = await invitation_view(service.handlers, tx, invitation_id)
            await record_viewed(
                tx, service.registry, topic=service.settings.access_topic, actor=viewer,
                invitation_id=invitation_id,
                fields=shown_in_clear(invitee_email=view.invitee_email, greeting=view.greeting),
                endpoint="GET /v1/invitations/{invitation_id}",
                purpose=purpose or "invitation_management",
            )
            return view, position

        read_one: tuple[InvitationView, str] = await run_read(service, read)
        view, position = read_one
        view.consistency = answer(response, position=position, wanted=wanted, reached=reached)
        return view

    @router.get("/invitations/{invitation_id}/url")
    async def url(
        invitation_id: UUID, request: Request, service: Service, principal: ManageInvitations,
        purpose: Purpose = None,
    ) -> dict[str, Any]:
        """The URL and code again; every call is recorded as InvitationUrlViewed on the
        invitation and as PersonalDataViewed (the code is the invitee's personal data)."""
        viewer = acting_person(principal)
        endpoint = "GET /v1/invitations/{invitation_id}/url"

        async def work(tx: Transaction) -> Answer:
            outcome, code = await service.handlers.view_url(
                tx, invitation_id, by=viewer, endpoint=endpoint,
            )
            await record_viewed(
                tx, service.registry, topic=service.settings.access_topic, actor=viewer,
                invitation_id=invitation_id, fields=["invitation_code"], endpoint=endpoint,
                purpose=purpose or "invitation_link",
            )
            return 200, {"id": str(invitation_id), "url": service.handlers.url_for(code),
                         "code": code, "version": outcome.version,
                         "position": outcome.position}, {}

        response = await run_command(request, service, principal, None, None, work)
        return json.loads(bytes(response.body))  # type: ignore[no-any-return]
