"""Bulk invitations over HTTP: a JSON or CSV upload, and the batch's progress and outcomes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from eventkit.http.idempotency import Idempotency, IdempotencyKey
from eventkit.http.problems import (
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_ERROR,
    Problem,
)
from eventkit.store import Transaction
from services.invitations.bulk import BadUpload, rows_from_csv, storable, submit_batch
from services.invitations.commands import BulkInvitations
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
from services.invitations.queries import BatchView, batch_position, batch_view


def add_bulk_routes(router: APIRouter) -> None:
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
        inviter = acting_person(principal)
        rows = await upload_rows(request, max_rows=service.settings.bulk_max_rows)

        async def work(tx: Transaction) -> Answer:
            batch_id = await submit_batch(
                tx, rows, by=inviter, permissions=principal.permissions, now=service.clock()
            )
            body = {"batch_id": str(batch_id), "rows": len(rows),
                    "status_url": f"/v1/invitations/bulk/{batch_id}"}
            return 202, body, {"Location": f"/v1/invitations/bulk/{batch_id}"}

        response = await run_command(request, service, principal, key, idempotency, work)
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
        wanted, reached = await settle(service, min_position, x_min_position)

        async def read(tx: Transaction) -> tuple[BatchView, str | None]:
            view = await batch_view(tx, batch_id, after_row=after_row, limit=limit)
            return view, await batch_position(tx, batch_id)

        read_batch: tuple[BatchView, str | None] = await run_read(service, read)
        view, position = read_batch
        view.consistency = answer(response, position=position, wanted=wanted, reached=reached)
        return view


async def upload_rows(request: Request, *, max_rows: int) -> list[dict[str, object]]:
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
