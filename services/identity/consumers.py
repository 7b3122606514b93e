"""Identity's reactions to other services' events: its local copy of invitations.

Registration checks a code against this table instead of calling the
invitations service. The invitee's e-mail is kept only as identity's keyed
hash. It arrives sealed under the invitation's own key, which the invitations
service keeps; identity fetches it (``resolver``) to hash the address. While
that service cannot answer, the event fails and is retried (then goes to the
dead-letter topic), rather than be stored without its address; a key already
erased, or ciphertext that does not open, is kept as unknown, so the code
still admits but vouches for no address.
"""

from __future__ import annotations

import json

from eventkit.envelope import Envelope
from eventkit.personal_data import KeyResolver, PersonalDataError, decrypt_value, is_encrypted
from eventkit.personal_data import subject_of as ciphertext_subject
from eventkit.registry import EventRegistry
from eventkit.store import Transaction
from schemas.invitations import (
    InvitationAccepted,
    InvitationCreated,
    InvitationExpired,
    InvitationRevoked,
)
from services.identity.derived_keys import DerivedKeys

_STATUS = {InvitationRevoked: "revoked", InvitationAccepted: "accepted",
           InvitationExpired: "expired"}


class InvitationCopy:
    def __init__(
        self, *, registry: EventRegistry, keys: DerivedKeys, resolver: KeyResolver
    ) -> None:
        self._registry = registry
        self._keys = keys
        self._resolver = resolver

    async def __call__(self, envelope: Envelope, tx: Transaction) -> None:
        if envelope.type not in self._registry:
            return
        event = self._registry.decode(envelope)
        conn = tx.connection  # type: ignore[attr-defined]
        if isinstance(event, InvitationCreated):
            await conn.execute(
                "INSERT INTO invitations (invitation_id, code_hash, status, valid_from, "
                "valid_until, invitee_email_hash, roles) VALUES ($1, $2, 'pending', $3, $4, $5, "
                "$6::jsonb) ON CONFLICT (invitation_id) DO NOTHING",
                event.invitation_id, event.code_hash, event.valid_from, event.valid_until,
                await self._email_hash(event.invitee_email),
                json.dumps([role.model_dump(mode="json") for role in event.roles]),
            )
            return
        status = _STATUS.get(type(event))
        if status is not None:
            await conn.execute(
                "UPDATE invitations SET status = $2 WHERE invitation_id = $1",
                event.invitation_id, status,  # type: ignore[attr-defined]
            )

    async def _email_hash(self, email: str) -> str | None:
        if not is_encrypted(email):
            return self._keys.email_hash(email)
        # KeyUnavailable propagates: the consumer retries the event.
        key = await self._resolver.key_for(ciphertext_subject(email))
        if key is None:
            return None
        try:
            return self._keys.email_hash(decrypt_value(email, key=key))
        except PersonalDataError:
            return None
