"""Opening the personal values a read model keeps sealed, at the moment a page shows them.

Values are ``eventkit.personal_data`` ciphertext; identity keeps the keys of
people, invitations those of invitees. A value whose key was erased, or that
a deletion already cleared, reads as ``[erased]``. ``KeyUnavailable`` (the
key service cannot answer) is not an erasure: the route answers 503.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from eventkit.personal_data import ERASED, KeyOwners

Owner = Literal["identity", "invitations"]


class Revealer:
    def __init__(self, owners: KeyOwners) -> None:
        self._owners = owners

    async def reveal(self, value: str | None, *, owner: Owner) -> str:
        if value is None:
            return ERASED
        shown = await self._owners.reveal(value, owner=owner)
        return ERASED if shown is None else shown

    async def reveal_many(self, values: list[str | None], *, owner: Owner) -> list[str]:
        return list(await asyncio.gather(*(self.reveal(v, owner=owner) for v in values)))
