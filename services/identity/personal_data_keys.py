"""The per-person data keys and the short-lived delivery keys, in identity's tables, wrapped.

Creating a person's key happens in the registration's transaction; deleting it
is the erasure and happens in the deletion's transaction, so an account never
exists without its key and the ``UserDeleted`` event never commits without
the key gone.

A *delivery key* seals one message for one reader: a confirmation or reset
token, or the address the farewell goes to once the person's key is gone. Its
id takes the subject's place in the ciphertext (``pd1:<key id>:…``), it is
served only to its audience (a service client) and only before it expires;
to anyone else, and afterwards, it is as absent as an erased key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from eventkit.database import Connection
from eventkit.personal_data import encrypt_value, new_data_key
from services.identity.derived_keys import unwrap, wrap


@dataclass(frozen=True, slots=True)
class ReadableKey:
    """A key a service client may have, and whose data it opens (for the access record)."""

    key: bytes
    person: UUID
    field: str  # "data_key" or "delivery_key", as the access event names it


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    key_id: UUID
    key: bytes

    def seal(self, value: str) -> str:
        return encrypt_value(value, subject_id=str(self.key_id), key=self.key)


class PersonalDataKeys:
    def __init__(self, wrapping_key: bytes) -> None:
        self._kek = wrapping_key

    async def create(self, conn: Connection, subject_id: UUID) -> bytes:
        key = new_data_key()
        await conn.execute(
            "INSERT INTO personal_data_keys (subject_id, wrapped_key) VALUES ($1, $2)",
            subject_id, wrap(self._kek, key, label=str(subject_id)),
        )
        return key

    async def get(self, conn: Connection, subject_id: UUID) -> bytes | None:
        blob = await conn.fetchval(
            "SELECT wrapped_key FROM personal_data_keys WHERE subject_id = $1", subject_id
        )
        return None if blob is None else unwrap(self._kek, blob, label=str(subject_id))

    async def destroy(self, conn: Connection, subject_id: UUID) -> None:
        """The erasure: the person's key and every delivery key of their messages."""
        await conn.execute("DELETE FROM personal_data_keys WHERE subject_id = $1", subject_id)
        await conn.execute("DELETE FROM delivery_keys WHERE user_id = $1", subject_id)

    # -- delivery keys ---------------------------------------------------------------

    async def create_delivery(
        self, conn: Connection, *, user_id: UUID, purpose: str, audience: str,
        audience_id: UUID, expires_at: datetime,
    ) -> DeliveryKey:
        key_id, key = uuid4(), new_data_key()
        await conn.execute(
            "INSERT INTO delivery_keys (key_id, user_id, purpose, audience, audience_id, "
            "wrapped_key, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key_id, user_id, purpose, audience, audience_id,
            wrap(self._kek, key, label=_delivery_label(key_id)), expires_at,
        )
        return DeliveryKey(key_id, key)

    async def readable(
        self, conn: Connection, key_id: UUID, *, reader: UUID, now: datetime
    ) -> ReadableKey | None:
        """The key ``reader`` may have under this id: a person's, or a delivery key for it.

        None alike for an erased key, an unknown id, a delivery key for another
        reader and an expired one, so the answer tells nothing more than "no key".
        """
        person_key = await self.get(conn, key_id)
        if person_key is not None:
            return ReadableKey(person_key, key_id, "data_key")
        row = await conn.fetchrow(
            "SELECT user_id, wrapped_key FROM delivery_keys "
            "WHERE key_id = $1 AND audience_id = $2 AND expires_at > $3", key_id, reader, now,
        )
        if row is None:
            return None
        key = unwrap(self._kek, row["wrapped_key"], label=_delivery_label(key_id))
        return ReadableKey(key, row["user_id"], "delivery_key")

    async def delete_expired(self, conn: Connection, now: datetime) -> int:
        deleted = await conn.fetchval(
            "WITH gone AS (DELETE FROM delivery_keys WHERE expires_at <= $1 RETURNING 1) "
            "SELECT count(*) FROM gone", now,
        )
        return int(deleted or 0)


def _delivery_label(key_id: UUID) -> str:
    # Its own label, so a delivery key's wrapping never opens as a person's.
    return f"delivery:{key_id}"
