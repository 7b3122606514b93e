"""The one door personal values go through: sealed in the tables, revealed at send time.

Values are ``eventkit.personal_data`` ciphertext whose subject names the key;
``owner`` says which service keeps that key (identity for people with an
account, invitations for invitees). A value whose key was erased reveals as
None, and the mail that needed it is cancelled; the log shows ``[erased]``.
``eventkit.personal_data.KeyOwners`` is the reader the service runs with.
"""

from __future__ import annotations

from typing import Protocol


class PersonalDataReader(Protocol):
    async def reveal(self, value: str, *, owner: str) -> str | None:
        """``value`` in clear; None once its key was erased.

        Raises ``eventkit.personal_data.KeyUnavailable`` while the key service
        cannot answer: a temporary failure, not an erasure.
        """
        ...
