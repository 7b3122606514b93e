"""Identity's secrets, each derived from ``IDENTITY_SECRET`` with its own HKDF label.

One root secret to manage; a leak of one derived key (say, the e-mail hash key)
gives nothing about the others. None of them is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.identity.settings import IdentitySettings


def _derive(root: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(root)


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def normalize_email(email: str) -> str:
    """E-mail addresses are unique case-insensitively (and without stray spaces)."""
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class DerivedKeys:
    email: bytes
    client_address: bytes
    data_key_wrapping: bytes
    signing_key_wrapping: bytes
    invitation_code: bytes

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> DerivedKeys:
        root = settings.identity_secret.get_secret_value().encode()
        return cls(
            email=_derive(root, "guestlist.identity.email-hash"),
            client_address=_derive(root, "guestlist.identity.client-address-hash"),
            data_key_wrapping=_derive(root, "guestlist.identity.data-key-wrapping"),
            signing_key_wrapping=_derive(root, "guestlist.identity.signing-key-wrapping"),
            # Not derived: the invitations service hashes codes with the same key.
            invitation_code=settings.invitation_code_key.get_secret_value().encode(),
        )

    def email_hash(self, email: str) -> str:
        return keyed_hash(self.email, normalize_email(email))

    def client_address_hash(self, address: str) -> str:
        return keyed_hash(self.client_address, address)

    def invitation_code_hash(self, code: str) -> str:
        return keyed_hash(self.invitation_code, code.strip())

    def __repr__(self) -> str:  # never print key material
        return "DerivedKeys(…)"


def wrap(kek: bytes, secret: bytes, *, label: str) -> bytes:
    """AES-GCM under ``kek``; ``label`` (e.g. the subject) binds the blob to its row."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, secret, label.encode())


def unwrap(kek: bytes, blob: bytes, *, label: str) -> bytes:
    return AESGCM(kek).decrypt(blob[:12], blob[12:], label.encode())
