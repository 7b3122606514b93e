"""Bearer tokens from identity are checked offline against its JWKS, served here over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import APIRouter, Depends

from eventkit.http.app import create_service_app
from eventkit.http.auth import (
    InvalidToken,
    JwksKeySet,
    KeySetUnavailable,
    Principal,
    RevokedSessions,
    TokenVerifier,
    require_permission,
)
from eventkit.http.problems import PROBLEM_BASE_URI
from eventkit.settings import ServiceSettings
from eventkit.testing.tokens import AUDIENCE, ISSUER, JwksServer, SigningKey, serve_jwks


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    async with serve_jwks() as served:
        yield served


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def verifier_for(
    server: JwksServer, client: httpx.AsyncClient, *, refetch_interval: float = 30.0,
    cache_seconds: float = 300.0, revoked: RevokedSessions | None = None,
) -> TokenVerifier:
    keys = JwksKeySet(
        server.url, client=client, cache_seconds=cache_seconds,
        refetch_interval_seconds=refetch_interval,
    )
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE,
                         revoked=revoked or RevokedSessions())


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


async def test_a_good_token_gives_its_principal(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]

    principal = await verifier_for(jwks_server, http_client).verify(key.mint())

    assert principal.subject == "user-1"
    assert principal.session_id == "session-1"
    assert principal.permissions == frozenset({"manage_invitations"})
    assert abs(principal.issued_at - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not yet valid"),
        ({"iat": int(time.time()) + 600}, "not yet valid"),
        ({"iss": "https://somebody-else.example"}, "(?i)issuer"),
        ({"aud": "another-product"}, "(?i)audience"),
        ({"sub": ""}, "subject"),
        ({"permissions": "manage_invitations"}, "permissions"),
    ],
)
async def test_claims_that_do_not_hold_are_refused(
    jwks_server: JwksServer, http_client: httpx.AsyncClient, claims: dict[str, Any], reason: str
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]

    with pytest.raises(InvalidToken, match=reason):
        await verifier_for(jwks_server, http_client).verify(key.mint(**claims))


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    published, impostor = SigningKey("k1"), SigningKey("k1")
    jwks_server.keys = [published.jwk()]

    with pytest.raises(InvalidToken, match="Signature verification failed"):
        await verifier_for(jwks_server, http_client).verify(impostor.mint())


async def test_unsigned_and_symmetric_tokens_are_refused(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]
    verifier = verifier_for(jwks_server, http_client)
    claims = jwt.decode(key.mint(), options={"verify_signature": False})
    public_bytes = key.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    with pytest.raises(InvalidToken, match="'none'"):
        await verifier.verify(unsigned({"alg": "none", "kid": "k1", "typ": "JWT"}, claims))
    # The classic confusion: HMAC keyed with the (public) verification key.
    forged = jwt.encode(claims, public_bytes, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken, match="'HS256'"):
        await verifier.verify(forged)
    with pytest.raises(InvalidToken, match="kid"):
        await verifier.verify(jwt.encode(claims, key.private, algorithm="EdDSA"))


async def test_tokens_issued_before_a_revocation_are_refused(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]
    revoked = RevokedSessions()
    verifier = verifier_for(jwks_server, http_client, revoked=revoked)
    earlier = key.mint(iat=int(time.time()) - 60)
    assert (await verifier.verify(earlier)).subject == "user-1"

    revoked.revoke("user-1", before=datetime.now(UTC) - timedelta(seconds=5))

    with pytest.raises(InvalidToken, match="revoked"):
        await verifier.verify(earlier)
    # Signing in again afterwards works; another user is untouched.
    assert await verifier.verify(key.mint(iat=int(time.time()) + 1))
    assert await verifier.verify(key.mint(sub="user-2", iat=int(time.time()) - 60))


async def test_a_revoked_session_id_is_refused_whatever_its_age(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]
    revoked = RevokedSessions()
    verifier = verifier_for(jwks_server, http_client, revoked=revoked)

    revoked.revoke_session("session-1")

    with pytest.raises(InvalidToken, match="revoked"):
        await verifier.verify(key.mint())
    assert await verifier.verify(key.mint(sid="session-2"))


async def test_a_rotated_key_is_picked_up_from_the_server(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    old, new = SigningKey("2026-01"), SigningKey("2026-02")
    jwks_server.keys = [old.jwk()]
    verifier = verifier_for(jwks_server, http_client, refetch_interval=0.2)
    assert await verifier.verify(old.mint())

    jwks_server.keys = [new.jwk()]
    await asyncio.sleep(0.25)

    assert (await verifier.verify(new.mint())).subject == "user-1"
    assert jwks_server.hits == 2
    await asyncio.sleep(0.25)
    with pytest.raises(InvalidToken, match="does not publish"):
        await verifier.verify(old.mint())


async def test_unknown_kids_refetch_at_most_once_per_interval(
    jwks_server: JwksServer, http_client: httpx.AsyncClient
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]
    verifier = verifier_for(jwks_server, http_client, refetch_interval=60.0)
    assert await verifier.verify(key.mint())

    made_up = [SigningKey(f"made-up-{n}").mint() for n in range(20)]
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in made_up),
                                    return_exceptions=True)

    assert all(isinstance(outcome, InvalidToken) for outcome in outcomes)
    assert jwks_server.hits == 1


async def test_the_cache_expires(jwks_server: JwksServer, http_client: httpx.AsyncClient) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]
    verifier = verifier_for(jwks_server, http_client, cache_seconds=1.0, refetch_interval=0.0)

    await verifier.verify(key.mint())
    await verifier.verify(key.mint())
    assert jwks_server.hits == 1
    await asyncio.sleep(1.1)
    await verifier.verify(key.mint())
    assert jwks_server.hits == 2


async def test_no_key_set_at_all_is_unavailable_not_invalid(
    http_client: httpx.AsyncClient,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    keys = JwksKeySet(f"http://127.0.0.1:{closed_port}/.well-known/jwks.json", client=http_client)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, revoked=RevokedSessions())

    with pytest.raises(KeySetUnavailable):
        await verifier.verify(SigningKey("k1").mint())


# Through HTTP: what a client of a service sees.


def guarded_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/invitations")
    async def invite(
        principal: Annotated[Principal, Depends(require_permission("manage_invitations"))],
    ) -> dict[str, str]:
        return {"invited_by": principal.subject}

    return router


@pytest.fixture
async def service(jwks_server: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        service_name="invitations",
        http_port=8002,
        database_url="postgresql://guestlist@127.0.0.1:5432/guestlist_invitations",
        identity_jwks_url=jwks_server.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    app = create_service_app(settings, routers=[guarded_router()])
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def test_no_token_is_a_401_problem_with_a_bearer_challenge(
    service: httpx.AsyncClient,
) -> None:
    response = await service.post("/v1/invitations")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == f"{PROBLEM_BASE_URI}unauthorized"


async def test_an_invalid_token_says_so_in_the_challenge(
    service: httpx.AsyncClient, jwks_server: JwksServer
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]

    response = await service.post(
        "/v1/invitations",
        headers={"Authorization": f"Bearer {key.mint(exp=int(time.time()) - 120)}"},
    )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["detail"] == "the token has expired"


async def test_a_missing_permission_is_a_403_that_names_it(
    service: httpx.AsyncClient, jwks_server: JwksServer
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]

    response = await service.post(
        "/v1/invitations",
        headers={"Authorization": f"Bearer {key.mint(permissions=['read_person'])}"},
    )

    assert response.status_code == 403
    body = response.json()
    assert body["type"] == f"{PROBLEM_BASE_URI}forbidden"
    assert body["missing_permission"] == "manage_invitations"
    assert "manage_invitations" in body["detail"]


async def test_a_permitted_caller_gets_through(
    service: httpx.AsyncClient, jwks_server: JwksServer
) -> None:
    key = SigningKey("k1")
    jwks_server.keys = [key.jwk()]

    response = await service.post(
        "/v1/invitations", headers={"Authorization": f"Bearer {key.mint(sub='manager-7')}"}
    )

    assert response.status_code == 200
    assert response.json() == {"invited_by": "manager-7"}
