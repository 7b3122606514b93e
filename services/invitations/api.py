"""The invitations service's HTTP routes, under /v1: parse, call a handler, answer.

This module makes, revokes and resends invitations and gives their data keys to
other services; the bulk upload (``bulk_api.py``), the public lookup
(``lookup_api.py``) and the reads of one invitation (``reads_api.py``) add their
routes to the same router, in the order that lets fixed paths win over
``/invitations/{invitation_id}``. What they share is in ``dependencies.py``.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Request, Response

from eventkit.http.auth import Principal
from eventkit.http.idempotency import Idempotency, IdempotencyKey
from eventkit.http.problems import NOT_FOUND, Problem
from eventkit.http.purpose import Purpose
from eventkit.personal_data import encode_key
from eventkit.store import Transaction
from services.invitations.access import record_viewed
from services.invitations.bulk_api import add_bulk_routes
from services.invitations.commands import CreateInvitation, RevokeInvitation
from services.invitations.dependencies import (
    Answer,
    KeyReader,
    ManageInvitations,
    Service,
    acting_person,
    run_command,
)
from services.invitations.lookup_api import add_lookup_route
from services.invitations.reads_api import add_read_routes
from services.invitations.runtime import InvitationsService


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["invitations"])

    @router.post("/invitations", status_code=201, responses={201: {"description": "Created"}})
    async def create(
        command: CreateInvitation, request: Request, service: Service,
        principal: ManageInvitations, key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        inviter = acting_person(principal)

        async def work(tx: Transaction) -> Answer:
            created = await service.handlers.create(
                tx, command, inviter_id=inviter, permissions=principal.permissions
            )
            event = created.event
            body = {
                "id": str(created.invitation_id), "status": "pending", "url": created.url,
                "code": created.code, "inviter_id": str(inviter),
                "invitee_email": event.invitee_email,
                "roles": [role.model_dump(mode="json") for role in event.roles],
                "locale": event.locale, "valid_from": event.valid_from.isoformat(),
                "valid_until": event.valid_until.isoformat(),
                "version": created.version, "position": created.position,
            }
            return 201, body, {"Location": f"/v1/invitations/{created.invitation_id}"}

        return await run_command(request, service, principal, key, idempotency, work)

    add_bulk_routes(router)
    add_lookup_route(router)
    add_read_routes(router)

    @router.post("/invitations/{invitation_id}/resend", status_code=200)
    async def resend(
        invitation_id: UUID, request: Request, service: Service, principal: ManageInvitations,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        sender = acting_person(principal)

        async def work(tx: Transaction) -> Answer:
            outcome = await service.handlers.resend(tx, invitation_id, by=sender)
            return 200, _outcome_body(outcome, "pending"), {}

        return await run_command(request, service, principal, key, idempotency, work)

    async def _revoke(
        invitation_id: UUID, reason: str | None, request: Request, service: InvitationsService,
        principal: Principal, key: str | None, idempotency: Any,
    ) -> Response:
        revoker = acting_person(principal)

        async def work(tx: Transaction) -> Answer:
            outcome = await service.handlers.revoke(tx, invitation_id, by=revoker, reason=reason)
            return 200, _outcome_body(outcome, "revoked"), {}

        return await run_command(request, service, principal, key, idempotency, work)

    @router.post("/invitations/{invitation_id}/revoke")
    async def revoke(
        invitation_id: UUID, request: Request, service: Service, principal: ManageInvitations,
        key: IdempotencyKey, idempotency: Idempotency,
        command: Annotated[RevokeInvitation | None, Body()] = None,
    ) -> Response:
        reason = command.reason if command is not None else None
        return await _revoke(invitation_id, reason, request, service, principal, key, idempotency)

    @router.delete("/invitations/{invitation_id}")
    async def delete(
        invitation_id: UUID, request: Request, service: Service, principal: ManageInvitations,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        """Revokes: nothing is deleted, the history stays for the audit."""
        return await _revoke(invitation_id, None, request, service, principal, key, idempotency)

    @router.get("/internal/personal-data-keys/{subject_id}")
    async def personal_data_key(
        subject_id: UUID, service: Service, reader: KeyReader, purpose: Purpose = None,
    ) -> dict[str, str]:
        """An invitation's data key, for services that decrypt its events (identity,
        notifications, audit, projections); each key given is recorded as PersonalDataViewed
        (field ``data_key``, the reading service's subject as actor), as identity does."""
        async with service.store.transaction() as tx:
            key = await service.handlers.keys.get(tx.connection, subject_id)
            if key is not None:
                await record_viewed(
                    tx, service.registry, topic=service.settings.access_topic,
                    actor=acting_person(reader), invitation_id=subject_id, fields=["data_key"],
                    endpoint="GET /v1/internal/personal-data-keys/{subject_id}",
                    purpose=purpose or "decrypt_events",
                )
        if key is None:
            raise Problem(type_=NOT_FOUND, detail="no key: erased or never existed")
        return {"subject_id": str(subject_id), "key": encode_key(key)}

    return router


def _outcome_body(outcome: Any, status: str) -> dict[str, Any]:
    return {"id": str(outcome.invitation_id), "status": status, "version": outcome.version,
            "position": outcome.position}
