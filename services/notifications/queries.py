"""Reads for support staff: the delivery log, one delivery, and template previews.

The log never shows a full address: the recipient is masked (``a***@example.org``)
from the sealed value, or ``[erased]`` once the person's key is gone, so
reading the log reveals nobody's address (and needs no access event). The
mail's other personal values (name, token, code) show only whether they still
open: ``[sealed]``, or ``[erased]`` once their key is gone or expired.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, Field

from eventkit.personal_data import KeyUnavailable, PersonalDataError
from services.notifications.domain import (
    ERASED,
    SAMPLE_PARAMS,
    DeliveryStatus,
    Platform,
    TemplateName,
    mask_address,
)
from services.notifications.personal_data import PersonalDataReader
from services.notifications.rendering import RenderedMail, Renderer


class BadCursor(ValueError):
    """The ``cursor`` is not one this service handed out."""


# One mail as the delivery log shows it, and the API's answer as it is (a comment, not a
# docstring: the OpenAPI schema of Delivery stays as it was).
class Delivery(BaseModel):
    id: UUID
    template: str
    locale: str
    status: DeliveryStatus
    attempts: int
    recipient: str
    recipient_hash: str | None
    user_id: UUID | None
    invitation_id: UUID | None
    cause_event_id: UUID
    cause_type: str
    message_id: str
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    sealed_fields: dict[str, str] = Field(
        description="Each other personal value the mail carries (name, token, code...): "
        "[sealed] while its key still opens it, [erased] once the key is gone (erased, or "
        "a delivery key past its time); never the value itself.",
    )


SEALED = "[sealed]"
UNAVAILABLE = "[unavailable]"


def encode_cursor(created_at: datetime, notification_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(notification_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, notification_id = json.loads(raw)
        return datetime.fromisoformat(created_at), UUID(notification_id)
    except (binascii.Error, ValueError, TypeError) as error:
        raise BadCursor("not a cursor from this list") from error


class DeliveryLog:
    def __init__(self, *, renderer: Renderer, contact_email: str) -> None:
        self._renderer = renderer
        self._contact = contact_email
        self._pool: asyncpg.Pool[Any] | None = None
        self._personal: PersonalDataReader | None = None

    def open(self, pool: asyncpg.Pool[Any], personal_data: PersonalDataReader) -> None:
        self._pool, self._personal = pool, personal_data

    def close(self) -> None:
        self._pool = self._personal = None

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise RuntimeError("the delivery log opens with the service's lifespan")
        return self._pool

    async def deliveries(
        self,
        *,
        person: UUID | None = None,
        template: TemplateName | None = None,
        status: DeliveryStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Delivery], str | None]:
        """Newest first; the second value is the cursor of the next page, if there is one."""
        conditions: list[str] = ["true"]
        args: list[object] = []
        for column, value in (("user_id", person), ("template", template), ("status", status)):
            if value is not None:
                args.append(str(value) if column != "user_id" else value)
                conditions.append(f"{column} = ${len(args)}")
        if cursor is not None:
            created_at, after = decode_cursor(cursor)
            args += [created_at, after]
            conditions.append(f"(created_at, notification_id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        rows = await self.pool.fetch(
            f"""SELECT * FROM deliveries WHERE {" AND ".join(conditions)}
                ORDER BY created_at DESC, notification_id DESC LIMIT ${len(args)}""",
            *args,
        )
        page = [await self._view(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return page, None
        last = rows[limit - 1]
        return page, encode_cursor(last["created_at"], last["notification_id"])

    async def delivery(self, notification_id: UUID) -> Delivery | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM deliveries WHERE notification_id = $1", notification_id
        )
        return None if row is None else await self._view(row)

    async def retry(self, notification_id: UUID) -> Delivery | bool | None:
        """Schedule a failed mail again with a fresh set of attempts; False if not failed."""
        row = await self.pool.fetchrow(
            """UPDATE deliveries SET status = 'scheduled', attempts = 0, next_attempt_at = now(),
                   dead_letter_due = false, updated_at = now()
               WHERE notification_id = $1 AND status = 'failed' RETURNING *""",
            notification_id,
        )
        if row is not None:
            return await self._view(row)
        exists = await self.pool.fetchval(
            "SELECT true FROM deliveries WHERE notification_id = $1", notification_id
        )
        return False if exists else None

    async def preview(self, template: TemplateName, *, locale: str | None) -> RenderedMail:
        row = await self.pool.fetchrow("SELECT * FROM platform_settings")
        platform = Platform() if row is None else Platform(
            name=row["name"], time_zone=row["time_zone"], default_locale=row["default_locale"]
        )  # fmt: skip
        return self._renderer.render(template, locale=locale, platform=platform,
                                     params=SAMPLE_PARAMS[template], contact_email=self._contact)

    async def _view(self, row: asyncpg.Record) -> Delivery:
        return Delivery(
            id=row["notification_id"], template=row["template"],
            locale=row["locale"], status=row["status"], attempts=row["attempts"],
            recipient=await self._recipient(row["recipient"], row["owner"]),
            recipient_hash=row["recipient_hash"], user_id=row["user_id"],
            invitation_id=row["invitation_id"], cause_event_id=row["cause_event_id"],
            cause_type=row["cause_type"], message_id=row["message_id"],
            last_error=row["last_error"], created_at=row["created_at"],
            updated_at=row["updated_at"], sent_at=row["sent_at"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "scheduled" else None,
            sealed_fields={name: await self._still_opens(value, row["owner"])
                           for name, value in json.loads(row["sealed"]).items()},
        )  # fmt: skip

    async def _recipient(self, sealed: str, owner: str) -> str:
        assert self._personal is not None
        try:
            address = await self._personal.reveal(sealed, owner=owner)
        except (KeyUnavailable, PersonalDataError, LookupError):
            return UNAVAILABLE
        return ERASED if address is None else mask_address(address)

    async def _still_opens(self, sealed: str, owner: str) -> str:
        assert self._personal is not None
        try:
            value = await self._personal.reveal(sealed, owner=owner)
        except (KeyUnavailable, PersonalDataError, LookupError):
            return UNAVAILABLE
        return ERASED if value is None else SEALED
