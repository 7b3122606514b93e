"""Reads: a person's profile opened with their data key, and what identity holds on them."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from eventkit.personal_data import ERASED, decrypt_data
from eventkit.postgres_store import PostgresTransaction
from schemas.identity import UserProfileUpdated, UserRegistered
from services.identity.account_status import UnknownUser
from services.identity.export import EventRef, HeldData
from services.identity.handlers import UnitOfWork
from services.identity.responses import (
    AccountRecords,
    ActiveSession,
    Profile,
    ScheduledChange,
    Sessions,
)

PROFILE_FIELDS = ("email", "name", "locale")


class _OneKey:
    """A resolver that knows one person's key (or that it is gone)."""

    def __init__(self, subject: UUID, key: bytes | None) -> None:
        self._subject = str(subject)
        self._key = key

    async def key_for(self, subject_id: str) -> bytes | None:
        return self._key if subject_id == self._subject else None


async def profile(work: UnitOfWork, tx: PostgresTransaction, user_id: UUID) -> dict[str, Any]:
    user = await work.load_user(tx, user_id)
    if not user.exists:
        raise UnknownUser(f"there is no account {user_id}")
    resolver = _OneKey(user_id, await work.data_keys.get(tx.connection, user_id))
    email: str = ERASED
    name: str | None = None
    locale = "en"
    registered_at = None
    for recorded in await tx.read_stream(str(user_id)):
        event_class = work.registry.class_for(recorded.envelope.type)
        if event_class not in (UserRegistered, UserProfileUpdated):
            continue
        data = await decrypt_data(event_class, json.loads(recorded.envelope.data_json), resolver)
        if event_class is UserRegistered:
            email, registered_at = data["email"], recorded.envelope.time
        name, locale = data.get("name"), data["locale"]
    return {
        "user_id": str(user_id), "email": email, "name": name, "locale": locale,
        "status": user.status.value if user.status else None,
        "roles": [r.model_dump(mode="json") for r in sorted(user.roles, key=str)],
        "permissions": sorted(user.permissions),
        "registered_at": registered_at.isoformat() if registered_at else None,
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
        "suspended_until": user.suspended_until.isoformat() if user.suspended_until else None,
    }


async def held_data(work: UnitOfWork, tx: PostgresTransaction, user_id: UUID) -> HeldData:
    """What identity itself holds on the person, for their data export."""
    shown = Profile.model_validate(await profile(work, tx, user_id))
    own_events: list[EventRef] = []
    via_invitation: UUID | None = None
    for stream in (str(user_id), f"access-{user_id}"):
        for recorded in await tx.read_stream(stream):
            envelope = recorded.envelope
            own_events.append(EventRef(str(envelope.id)))
            if work.registry.class_for(envelope.type) is UserRegistered:
                invitation = json.loads(envelope.data_json).get("via_invitation_id")
                via_invitation = UUID(invitation) if invitation else None
    conn = tx.connection
    changed_at = await conn.fetchval(
        "SELECT changed_at FROM credentials WHERE user_id = $1", user_id)
    scheduled = await conn.fetch(
        "SELECT kind, due_at FROM scheduled_work WHERE user_id = $1 ORDER BY due_at", user_id)
    sessions = await conn.fetch(
        "SELECT session_id, created_at, expires_at, revoked_at FROM sessions "
        "WHERE user_id = $1 ORDER BY created_at", user_id)
    now = work.clock()
    return HeldData(
        user_id=user_id, profile=shown, own_events=tuple(own_events),
        account=AccountRecords(
            password_changed_at=changed_at, via_invitation_id=via_invitation,
            scheduled=[ScheduledChange(kind=r["kind"], due_at=r["due_at"]) for r in scheduled],
        ),
        sessions=Sessions(
            total=len(sessions),
            last_signed_in_at=sessions[-1]["created_at"] if sessions else None,
            active=[ActiveSession(session_id=r["session_id"], created_at=r["created_at"],
                                  expires_at=r["expires_at"])
                    for r in sessions if r["revoked_at"] is None and r["expires_at"] > now],
        ),
    )
