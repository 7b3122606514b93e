"""Reads: a person's profile and their data export, opened with their data key."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from eventkit.personal_data import ERASED, decrypt_data
from eventkit.postgres_store import PostgresTransaction
from schemas.identity import UserProfileUpdated, UserRegistered
from services.identity.domain import UnknownUser
from services.identity.handlers import UnitOfWork

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


async def export(work: UnitOfWork, tx: PostgresTransaction, user_id: UUID) -> dict[str, Any]:
    """Everything identity holds on the person: their events in clear, and their profile."""
    resolver = _OneKey(user_id, await work.data_keys.get(tx.connection, user_id))
    events = []
    for stream in (str(user_id), f"access-{user_id}"):
        for recorded in await tx.read_stream(stream):
            event_class = work.registry.class_for(recorded.envelope.type)
            data = await decrypt_data(
                event_class, json.loads(recorded.envelope.data_json), resolver
            )
            events.append({
                "type": recorded.envelope.type, "time": recorded.envelope.time.isoformat(),
                "actor_id": recorded.envelope.actor_id, "data": data,
            })
    return {"profile": await profile(work, tx, user_id), "events": events}
