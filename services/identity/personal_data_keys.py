"""The per-person data keys, in identity's own table, wrapped at rest.

Creating the key happens in the registration's transaction; deleting it is
the erasure and happens in the deletion's transaction, so an account never
exists without its key and the ``UserDeleted`` event never commits without
the key gone.
"""

from __future__ import annotations

from uuid import UUID

from eventkit.database import Connection
from eventkit.personal_data import new_data_key
from services.identity.derived_keys import unwrap, wrap


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
        await conn.execute("DELETE FROM personal_data_keys WHERE subject_id = $1", subject_id)
