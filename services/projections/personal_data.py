"""Opening the personal values a read model keeps sealed, at the moment a page shows them.

Values are ``eventkit.personal_data`` ciphertext; identity keeps the keys of
people, invitations those of invitees. A value whose key was erased, or that
a deletion already cleared, reads as ``[erased]``. ``KeyUnavailable`` (the
key service cannot answer) is not an erasure: the route answers 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Literal

from eventkit.personal_data import ERASED, KeyResolver, decrypt_value, is_encrypted, subject_of

Owner = Literal["identity", "invitations"]


class Revealer:
    def __init__(self, resolvers: Mapping[str, KeyResolver]) -> None:
        self._resolvers = dict(resolvers)

    async def reveal(self, value: str | None, *, owner: Owner) -> str:
        if value is None:
            return ERASED
        if not is_encrypted(value):
            return value  # written before encryption was switched on
        key = await self._resolvers[owner].key_for(subject_of(value))
        return ERASED if key is None else decrypt_value(value, key=key)

    async def reveal_many(self, values: list[str | None], *, owner: Owner) -> list[str]:
        return list(await asyncio.gather(*(self.reveal(v, owner=owner) for v in values)))
