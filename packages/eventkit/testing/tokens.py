"""Access tokens for tests: an Ed25519 signing key and identity's JWKS on a real HTTP port.

Services verify tokens offline against identity's key set, so a test that
calls a protected route mints a token with :class:`SigningKey` and points
``IDENTITY_JWKS_URL`` at :func:`serve_jwks`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from jwt.algorithms import OKPAlgorithm

from eventkit.testing.server import serving

ISSUER = "http://127.0.0.1:8001"
AUDIENCE = "guestlist"


class SigningKey:
    """identity's signing key, as a test plays it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.generate()

    def jwk(self) -> dict[str, Any]:
        public = json.loads(OKPAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "EdDSA"}

    def mint(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "sub": "user-1", "sid": "session-1", "permissions": ["manage_invitations"],
            "iat": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE,
        } | claims
        return jwt.encode(payload, self.private, algorithm="EdDSA", headers={"kid": self.kid})


class JwksServer:
    """identity's /.well-known/jwks.json: the keys it serves and how often it was asked."""

    def __init__(self, keys: Iterable[SigningKey] = ()) -> None:
        self.keys: list[dict[str, Any]] = [key.jwk() for key in keys]
        self.hits = 0
        self.url = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        async def jwks() -> dict[str, Any]:
            self.hits += 1
            return {"keys": self.keys}

        return app


@asynccontextmanager
async def serve_jwks(*keys: SigningKey) -> AsyncIterator[JwksServer]:
    """A real uvicorn on a free port serving ``keys``; ``.url`` is the JWKS URL."""
    served = JwksServer(keys)
    async with serving(served.app(), lifespan="off") as base_url:
        served.url = f"{base_url}/.well-known/jwks.json"
        yield served
