"""The one door personal values go through: sealed in the tables, revealed at send time.

Values are ``eventkit.personal_data`` ciphertext whose subject names the key;
``owner`` says which service keeps that key (identity for people with an
account, invitations for invitees). A value whose key was erased reveals as
None, and the mail that needed it is cancelled; the log shows ``[erased]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from eventkit.personal_data import KeyResolver, decrypt_value, is_encrypted, subject_of


class PersonalDataReader(Protocol):
    async def reveal(self, value: str, *, owner: str) -> str | None:
        """``value`` in clear; None once its key was erased.

        Raises ``eventkit.personal_data.KeyUnavailable`` while the key service
        cannot answer: a temporary failure, not an erasure.
        """
        ...


class KeyedPersonalData:
    """Opens ciphertext with the key its owner's resolver gives (cached by the resolver)."""

    def __init__(self, resolvers: Mapping[str, KeyResolver]) -> None:
        self._resolvers = dict(resolvers)

    async def reveal(self, value: str, *, owner: str) -> str | None:
        if not is_encrypted(value):
            return value  # written before encryption was switched on
        resolver = self._resolvers.get(owner)
        if resolver is None:
            raise LookupError(f"no key resolver for the personal data of {owner!r}")
        key = await resolver.key_for(subject_of(value))
        return None if key is None else decrypt_value(value, key=key)
