"""The invitations service's HTTP routes, under /v1: parse, call a handler, answer.

Writes run in one store transaction together with their Idempotency-Key answer
(see ``eventkit.http.idempotency``); rule violations become problem documents.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from eventkit.http.auth import Principal, require_permission
from eventkit.http.idempotency import Idempotency, IdempotencyKey, fingerprint_request
from eventkit.http.problems import (
    FORBIDDEN,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_ERROR,
    Problem,
)
from eventkit.personal_data import encode_key
from eventkit.store import Transaction
from services.invitations.access import PURPOSE_PATTERN, record_viewed
from services.invitations.bulk import BadUpload, rows_from_csv, storable, submit_batch
from services.invitations.commands import BulkInvitations, CreateInvitation, RevokeInvitation
from services.invitations.consistency import (
    BadPosition,
    MinPosition,
    MinPositionHeader,
    answer,
    wait_until_seen,
    wanted_position,
)
from services.invitations.handlers import InvitationNotFound
from services.invitations.problems import invalid_field, problem_for
from services.invitations.queries import (
    BatchView,
    InvitationView,
    PublicInvitationView,
    batch_position,
    batch_view,
    invitation_view,
    public_view,
    shown_in_clear,
)
from services.invitations.runtime import InvitationsService
from services.invitations.secrets import is_well_formed_code

Purpose = Annotated[
    str | None,
    Header(alias="X-Purpose", pattern=PURPOSE_PATTERN,
           description="Why the invitee's data is read, e.g. support_ticket; recorded."),
]
ManageInvitations = Annotated[Principal, Depends(require_permission("manage_invitations"))]
KeyReader = Annotated[Principal, Depends(require_permission("read_personal_data_keys"))]
Answer = tuple[int, dict[str, Any], dict[str, str]]


def _service(request: Request) -> InvitationsService:
    service = request.app.state.invitations
    assert isinstance(service, InvitationsService)
    return service


Service = Annotated[InvitationsService, Depends(_service)]


def _person(principal: Principal) -> UUID:
    """Invitations are made by people: the subject of their token is their user id."""
    try:
        return UUID(principal.subject)
    except ValueError:
        raise Problem(type_=FORBIDDEN, detail="only a person can manage invitations") from None


async def _command(
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


async def _read(service: InvitationsService, read: Callable[[Transaction], Awaitable[Any]]) -> Any:
    try:
        async with service.store.transaction() as tx:
            return await read(tx)
    except Exception as error:
        problem = problem_for(error)
        if problem is None:
            raise
        raise problem from error


async def _settle(
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


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["invitations"])

    @router.post("/invitations", status_code=201, responses={201: {"description": "Created"}})
    async def create(
        command: CreateInvitation, request: Request, service: Service,
        principal: ManageInvitations, key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        inviter = _person(principal)

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

        return await _command(request, service, principal, key, idempotency, work)

    @router.post("/invitations/bulk", status_code=202, openapi_extra={"requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BulkInvitations"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }})
    async def bulk(
        request: Request, service: Service, principal: ManageInvitations,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        """JSON ``{"rows": [...]}`` or a CSV body (``Content-Type: text/csv``)."""
        inviter = _person(principal)
        rows = await _upload_rows(request, max_rows=service.settings.bulk_max_rows)

        async def work(tx: Transaction) -> Answer:
            batch_id = await submit_batch(
                tx, rows, by=inviter, permissions=principal.permissions, now=service.clock()
            )
            body = {"batch_id": str(batch_id), "rows": len(rows),
                    "status_url": f"/v1/invitations/bulk/{batch_id}"}
            return 202, body, {"Location": f"/v1/invitations/bulk/{batch_id}"}

        response = await _command(request, service, principal, key, idempotency, work)
        service.bulk.wake.set()
        return response

    @router.get("/invitations/bulk/{batch_id}")
    async def batch(
        batch_id: UUID, response: Response, service: Service, _: ManageInvitations,
        after_row: Annotated[int, Query(ge=0, description="Rows after this row number.")] = 0,
        limit: Annotated[int, Query(ge=0, le=1000)] = 1000,
        min_position: MinPosition = None, x_min_position: MinPositionHeader = None,
    ) -> BatchView:
        """Progress, and a page of per-row outcomes (``next_after_row`` continues).

        Rows show outcomes, invitation ids and reasons, never an address: the
        input is cleared once a row has its outcome, and reasons never quote it.
        """
        wanted, reached = await _settle(service, min_position, x_min_position)

        async def read(tx: Transaction) -> tuple[BatchView, str | None]:
            view = await batch_view(tx, batch_id, after_row=after_row, limit=limit)
            return view, await batch_position(tx, batch_id)

        read_batch: tuple[BatchView, str | None] = await _read(service, read)
        view, position = read_batch
        view.consistency = answer(response, position=position, wanted=wanted, reached=reached)
        return view

    @router.get("/invitations/lookup")
    async def lookup(
        request: Request, service: Service,
        code: Annotated[str, Query(max_length=200, description="The invitation code.")],
    ) -> PublicInvitationView:
        """Public: what the registration page shows. Unknown and malformed codes look alike.

        Limited per client address across all replicas; a greeting shown is
        recorded as PersonalDataViewed with no actor (whoever holds the code).
        """
        client = request.client.host if request.client is not None else "unknown"
        await service.lookup_limit.check(
            service.store.pool, client_hash=service.handlers.secrets.client_hash(client),
            now=service.clock(),
        )
        unknown = Problem(type_=NOT_FOUND, detail="no invitation has this code")
        if not is_well_formed_code(code):
            raise unknown
        try:
            async with service.store.transaction() as tx:
                view, invitation_id = await public_view(service.handlers, tx, code)
                await record_viewed(
                    tx, service.registry, topic=service.settings.access_topic, actor=None,
                    invitation_id=invitation_id, fields=shown_in_clear(greeting=view.greeting),
                    endpoint="GET /v1/invitations/lookup", purpose="invitation_registration",
                )
                return view
        except InvitationNotFound:
            raise unknown from None

    @router.get("/invitations/{invitation_id}")
    async def get(
        invitation_id: UUID, response: Response, service: Service, principal: ManageInvitations,
        purpose: Purpose = None, min_position: MinPosition = None,
        x_min_position: MinPositionHeader = None,
    ) -> InvitationView:
        """One invitation; showing the invitee's address leaves PersonalDataViewed."""
        viewer = _person(principal)
        wanted, reached = await _settle(service, min_position, x_min_position)

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

        read_one: tuple[InvitationView, str] = await _read(service, read)
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
        viewer = _person(principal)
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

        response = await _command(request, service, principal, None, None, work)
        return json.loads(bytes(response.body))  # type: ignore[no-any-return]

    @router.post("/invitations/{invitation_id}/resend", status_code=200)
    async def resend(
        invitation_id: UUID, request: Request, service: Service, principal: ManageInvitations,
        key: IdempotencyKey, idempotency: Idempotency,
    ) -> Response:
        sender = _person(principal)

        async def work(tx: Transaction) -> Answer:
            outcome = await service.handlers.resend(tx, invitation_id, by=sender)
            return 200, _outcome_body(outcome, "pending"), {}

        return await _command(request, service, principal, key, idempotency, work)

    async def _revoke(
        invitation_id: UUID, reason: str | None, request: Request, service: InvitationsService,
        principal: Principal, key: str | None, idempotency: Any,
    ) -> Response:
        revoker = _person(principal)

        async def work(tx: Transaction) -> Answer:
            outcome = await service.handlers.revoke(tx, invitation_id, by=revoker, reason=reason)
            return 200, _outcome_body(outcome, "revoked"), {}

        return await _command(request, service, principal, key, idempotency, work)

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
                    actor=_person(reader), invitation_id=subject_id, fields=["data_key"],
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


async def _upload_rows(request: Request, *, max_rows: int) -> list[dict[str, object]]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if media_type == "text/csv":
        try:
            return storable(rows_from_csv(body.decode("utf-8-sig"), max_rows=max_rows))
        except UnicodeDecodeError:
            raise Problem(type_=VALIDATION_ERROR, detail="the CSV must be UTF-8") from None
        except BadUpload as error:
            status = PAYLOAD_TOO_LARGE if "at most" in str(error) else VALIDATION_ERROR
            raise Problem(type_=status, detail=str(error)) from None
    if media_type not in ("application/json", ""):
        raise Problem(type_=UNSUPPORTED_MEDIA_TYPE,
                      detail="send application/json ({\"rows\": [...]}) or text/csv")
    try:
        upload = BulkInvitations.model_validate_json(body or b"{}")
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in item["loc"]) or "body"
                         for item in error.errors(include_url=False, include_input=False)})
        too_many = any(item["type"] == "too_long" for item in error.errors())
        raise Problem(
            type_=PAYLOAD_TOO_LARGE if too_many else VALIDATION_ERROR,
            detail=f"Invalid fields: {', '.join(fields)}"
            + (f" (at most {max_rows} rows)" if too_many else ""),
        ) from None
    if len(upload.rows) > max_rows:
        raise Problem(type_=PAYLOAD_TOO_LARGE, detail=f"at most {max_rows} rows per upload")
    try:
        return storable(upload.rows)
    except BadUpload as error:
        raise Problem(type_=VALIDATION_ERROR, detail=str(error)) from None
