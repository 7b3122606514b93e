"""The service's secrets: invitation codes, keyed hashes and the per-invitation data keys.

One data key per invitation (the ciphertext's subject is the invitation id):
erasing an invitee deletes the keys of every invitation to their address, and
no ciphertext links two invitations of one person. Keys are wrapped at rest
with a key derived from ``INVITATIONS_SECRET``. Nothing here is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from eventkit.database import Connection
from eventkit.personal_data import new_data_key
from services.invitations.settings import InvitationsSettings

# 24 random bytes: 192 bits, 32 URL-safe characters.
_CODE_BYTES = 24
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")


def new_code() -> str:
    return secrets.token_urlsafe(_CODE_BYTES)


def is_well_formed_code(code: str) -> bool:
    return CODE_PATTERN.fullmatch(code) is not None


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def normalize_email(email: str) -> str:
    """Addresses are one invitee case-insensitively (and without stray spaces)."""
    return email.strip().lower()


def _derive(root: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(root)


@dataclass(frozen=True, slots=True)
class ServiceSecrets:
    email: bytes
    code: bytes
    key_wrapping: bytes
    client: bytes

    @classmethod
    def from_settings(cls, settings: InvitationsSettings) -> ServiceSecrets:
        root = settings.invitations_secret.get_secret_value().encode()
        return cls(
            email=_derive(root, "guestlist.invitations.email-hash"),
            # Not derived: identity hashes presented codes with the same key.
            code=settings.invitation_code_key.get_secret_value().encode(),
            key_wrapping=_derive(root, "guestlist.invitations.data-key-wrapping"),
            client=_derive(root, "guestlist.invitations.client-address"),
        )

    def email_hash(self, email: str) -> str:
        return keyed_hash(self.email, normalize_email(email))

    def code_hash(self, code: str) -> str:
        # identity strips the presented code the same way.
        return keyed_hash(self.code, code.strip())

    def client_hash(self, address: str) -> str:
        """A client address is personal data: the lookup limit counts by this hash."""
        return keyed_hash(self.client, address)

    def __repr__(self) -> str:  # never print key material
        return "ServiceSecrets(…)"


class InvitationKeys:
    """The per-invitation data keys in ``invitation_keys``, wrapped with AES-GCM."""

    def __init__(self, wrapping_key: bytes) -> None:
        self._kek = wrapping_key

    async def create(self, conn: Connection, invitation_id: UUID) -> bytes:
        key = new_data_key()
        nonce = os.urandom(12)
        blob = nonce + AESGCM(self._kek).encrypt(nonce, key, str(invitation_id).encode())
        await conn.execute(
            "INSERT INTO invitation_keys (invitation_id, wrapped_key) VALUES ($1, $2)",
            invitation_id, blob,
        )
        return key

    async def get(self, conn: Connection, invitation_id: UUID) -> bytes | None:
        blob: bytes | None = await conn.fetchval(
            "SELECT wrapped_key FROM invitation_keys WHERE invitation_id = $1", invitation_id
        )
        if blob is None:
            return None
        return AESGCM(self._kek).decrypt(blob[:12], blob[12:], str(invitation_id).encode())

    async def destroy_for_email(self, conn: Connection, email_hash: str) -> list[UUID]:
        """Erase every invitation of one address; returns the invitations erased."""
        rows = await conn.fetch(
            "DELETE FROM invitation_keys k USING invitations i "
            "WHERE k.invitation_id = i.invitation_id AND i.email_hash = $1 "
            "RETURNING k.invitation_id",
            email_hash,
        )
        return [row["invitation_id"] for row in rows]
