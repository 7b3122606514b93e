"""Ed25519 keys that sign access tokens, kept in identity's database, and the tokens.

Private keys are stored wrapped (AES-GCM under a key derived from
``IDENTITY_SECRET``) and never logged. The JWKS publishes the current key and
every retired key until the last token it signed has expired, so rotation
never refuses a token that was valid when issued. Rotation runs under an
advisory lock: two replicas starting at once make one key, not two.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from jwt.algorithms import OKPAlgorithm

from services.identity.derived_keys import unwrap, wrap

_ROTATION_LOCK = "identity.signing-keys.rotation"
# A replica re-reads the current key this often, so it signs with a new one soon after.
_RELOAD_SECONDS = 10.0
# Published past the expiry of the last token: the verifiers' clock leeway.
_LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class _CurrentKey:
    kid: str
    private: Ed25519PrivateKey
    loaded_at: float


class SigningKeys:
    def __init__(
        self, pool: Callable[[], asyncpg.Pool[Any]], *, wrapping_key: bytes,
        rotation: timedelta, token_ttl: timedelta,
    ) -> None:
        self._pool_of = pool
        self._kek = wrapping_key
        self._rotation = rotation
        self._token_ttl = token_ttl
        self._current: _CurrentKey | None = None

    @property
    def _pool(self) -> asyncpg.Pool[Any]:
        return self._pool_of()

    async def ensure_current(self) -> None:
        """Make a key when there is none or the current one is due for rotation."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _ROTATION_LOCK)
            due = await conn.fetchval(
                "SELECT count(*) = 0 FROM signing_keys "
                "WHERE retired_at IS NULL AND created_at > now() - $1::interval",
                self._rotation,
            )
            if due:
                await self._rotate(conn)
        self._current = None

    async def rotate(self) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _ROTATION_LOCK)
            kid = await self._rotate(conn)
        self._current = None
        return kid

    async def _rotate(self, conn: Any) -> str:
        await conn.execute(
            "UPDATE signing_keys SET retired_at = now(), published_until = now() + $1::interval "
            "WHERE retired_at IS NULL",
            self._token_ttl + _LEEWAY,
        )
        private = Ed25519PrivateKey.generate()
        kid = uuid.uuid4().hex
        public = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        jwk = {**public, "kid": kid, "use": "sig", "alg": "EdDSA"}
        raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        await conn.execute(
            "INSERT INTO signing_keys (kid, wrapped_private, public_jwk) VALUES ($1, $2, $3)",
            kid, wrap(self._kek, raw, label=kid), json.dumps(jwk),
        )
        return kid

    async def jwks(self) -> dict[str, Any]:
        rows = await self._pool.fetch(
            "SELECT public_jwk::text AS jwk FROM signing_keys "
            "WHERE retired_at IS NULL OR published_until > now() ORDER BY created_at DESC"
        )
        return {"keys": [json.loads(row["jwk"]) for row in rows]}

    async def _signing_key(self) -> _CurrentKey:
        current = self._current
        if current is not None and time.monotonic() - current.loaded_at < _RELOAD_SECONDS:
            return current
        row = await self._pool.fetchrow(
            "SELECT kid, wrapped_private FROM signing_keys WHERE retired_at IS NULL "
            "ORDER BY created_at DESC LIMIT 1"
        )
        if row is None:
            await self.ensure_current()
            return await self._signing_key()
        raw = unwrap(self._kek, row["wrapped_private"], label=row["kid"])
        self._current = _CurrentKey(
            row["kid"], Ed25519PrivateKey.from_private_bytes(raw), time.monotonic()
        )
        return self._current

    async def sign(self, claims: dict[str, Any]) -> str:
        key = await self._signing_key()
        return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_at: datetime


class TokenMinter:
    """Access tokens with the claims every service's verifier requires."""

    def __init__(
        self, keys: SigningKeys, *, issuer: str, audience: str, ttl: timedelta
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl

    async def mint(
        self, *, subject: str, session_id: str, permissions: frozenset[str], now: datetime,
        ttl: timedelta | None = None,
    ) -> AccessToken:
        expires_at = now + (ttl or self.ttl)
        claims = {
            "iss": self._issuer, "aud": self._audience, "sub": subject, "sid": session_id,
            "permissions": sorted(permissions), "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return AccessToken(await self._keys.sign(claims), expires_at)
