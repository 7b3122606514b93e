"""Bearer tokens issued by identity, verified offline against its JWKS.

A token is accepted when its signature checks with a key from identity's
key set under an asymmetric algorithm, its ``exp``/``nbf``/``iat``/``iss``/
``aud`` claims hold, and its session was not revoked since it was issued.

Claims identity puts in a token: ``sub`` (user id), ``sid`` (session id),
``permissions`` (list of permission names), ``iat``, ``exp``, ``iss``,
``aud`` and optionally ``nbf``; the header names the key in ``kid``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from eventkit.http.problems import FORBIDDEN, SERVICE_UNAVAILABLE, UNAUTHORIZED, Problem
from eventkit.logging import get_logger

# Asymmetric only: with HS* anyone holding the (public) key could mint tokens.
ALLOWED_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
_REALM = 'Bearer realm="guestlist"'


class InvalidToken(Exception):
    """The token cannot be trusted; the message is safe to show the caller."""


class KeySetUnavailable(Exception):
    """Identity's key set could not be fetched and none is cached."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the token says."""

    subject: str
    session_id: str | None
    permissions: frozenset[str]
    issued_at: datetime

    def can(self, permission: str) -> bool:
        return permission in self.permissions


class JwksKeySet:
    """Identity's public keys, fetched over HTTP and cached.

    The cache is refreshed after ``cache_seconds``. A token naming a key we do
    not know triggers a refetch (identity rotated its key), but at most once
    per ``refetch_interval_seconds``, so a flood of made-up ``kid``s cannot
    turn into a flood of requests to identity.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        cache_seconds: float = 300.0,
        refetch_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client
        self._cache_seconds = cache_seconds
        self._refetch_interval = refetch_interval_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._log = get_logger("eventkit.auth")

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named ``kid``; raises InvalidToken when identity has no such key."""
        if self._is_fresh() and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            # Re-checked under the lock: another request may have refreshed meanwhile.
            stale = not self._is_fresh() or kid not in self._keys
            if stale and self._may_refetch():
                await self._refresh()
        if kid in self._keys:
            return self._keys[kid]
        if not self._keys:
            raise KeySetUnavailable(f"no keys from {self.url} yet")
        raise InvalidToken("the token was signed with a key identity does not publish")

    def _is_fresh(self) -> bool:
        return (
            self._fetched_at is not None
            and self._clock() - self._fetched_at < self._cache_seconds
        )

    def _may_refetch(self) -> bool:
        # With no keys at all nothing can be verified: try again soon (identity starting).
        interval = self._refetch_interval if self._keys else min(self._refetch_interval, 1.0)
        return self._attempted_at is None or self._clock() - self._attempted_at >= interval

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            keys = self._parse(response.json())
        except (httpx.HTTPError, ValueError) as error:
            if not self._keys:
                raise KeySetUnavailable(f"cannot fetch {self.url}: {error}") from error
            # Identity briefly away: the keys we have are still identity's keys.
            self._fetched_at = self._clock()
            self._log.warning("jwks refresh failed, keeping cached keys", url=self.url,
                              error=str(error))
            return
        self._keys = keys
        self._fetched_at = self._clock()

    def _parse(self, document: Any) -> dict[str, jwt.PyJWK]:
        entries = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError(f"{self.url} did not answer with a JWK set")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            try:
                key = jwt.PyJWK(dict(entry))
            except jwt.PyJWTError as error:
                self._log.warning("skipping unusable jwk", kid=kid, error=str(error))
                continue
            if isinstance(kid, str) and key.algorithm_name in ALLOWED_ALGORITHMS:
                keys[kid] = key
        return keys


class RevokedSessions:
    """Sessions revoked since their tokens were issued, kept in memory.

    Fed by a consumer of ``SessionsRevoked`` (and friends). A token issued
    before its subject's revocation time, or for a revoked session id, is
    refused even though its signature and expiry are fine.
    """

    def __init__(self) -> None:
        self._revoked_before: dict[str, datetime] = {}
        self._sessions: set[str] = set()

    def revoke(self, subject: str, before: datetime) -> None:
        if before.tzinfo is None:
            raise ValueError("revocation times must be timezone-aware")
        current = self._revoked_before.get(subject)
        # Events can arrive out of order across partitions: keep the latest cut-off.
        if current is None or before > current:
            self._revoked_before[subject] = before

    def revoke_session(self, session_id: str) -> None:
        self._sessions.add(session_id)

    def is_revoked(self, principal: Principal) -> bool:
        if principal.session_id is not None and principal.session_id in self._sessions:
            return True
        cut_off = self._revoked_before.get(principal.subject)
        # iat has one-second precision: a token from the revocation's own second is refused.
        return cut_off is not None and principal.issued_at < cut_off


class TokenVerifier:
    def __init__(
        self,
        keys: JwksKeySet,
        *,
        issuer: str,
        audience: str,
        revoked: RevokedSessions,
        leeway_seconds: float = 30.0,
    ) -> None:
        self.keys = keys
        self.revoked = revoked
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken("the token is not a JWT") from error
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidToken(f"tokens signed with {algorithm!r} are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("the token does not name its key (kid)")
        key = await self.keys.key(kid)
        if key.algorithm_name != algorithm:
            raise InvalidToken("the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[algorithm], audience=self._audience,
                issuer=self._issuer, leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidToken("the token has expired") from error
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the token is not valid: {error}") from error
        principal = _principal(claims)
        if self.revoked.is_revoked(principal):
            raise InvalidToken("the session was revoked; sign in again")
        return principal


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject, session_id = claims["sub"], claims.get("sid")
    permissions = claims.get("permissions", [])
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token has no subject")
    if session_id is not None and not isinstance(session_id, str):
        raise InvalidToken("the token's session id is not a string")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise InvalidToken("the token's permissions are not a list of names")
    return Principal(
        subject=subject,
        session_id=session_id,
        permissions=frozenset(permissions),
        issued_at=datetime.fromtimestamp(float(claims["iat"]), tz=UTC),
    )


async def get_token_verifier(request: Request) -> TokenVerifier:
    """The app's verifier, put on ``app.state`` by the app factory.

    ``async`` though it awaits nothing: FastAPI runs a plain ``def`` dependency in a
    worker thread, a hand-off that cost ~9% of a service's CPU on every request.
    """
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError("the app was not built by create_service_app")
    return verifier


# Declares the scheme in OpenAPI; errors are ours (problem details), not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="An access token issued by identity.")


async def current_principal(
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Problem(
            type_=UNAUTHORIZED, detail="send an access token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": _REALM},
        )
    try:
        return await verifier.verify(credentials.credentials)
    except InvalidToken as error:
        raise Problem(
            type_=UNAUTHORIZED, detail=str(error),
            headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
        ) from error
    except KeySetUnavailable as error:
        raise Problem(
            type_=SERVICE_UNAVAILABLE, detail="tokens cannot be checked right now",
            headers={"Retry-After": "5"},
        ) from error


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_permission(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the call through only with ``permission``."""

    async def permitted_principal(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise Problem(
                type_=FORBIDDEN, detail=f"this needs the {permission} permission",
                missing_permission=permission,
            )
        return principal

    return permitted_principal
