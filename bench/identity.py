"""Identity throughput: registrations/s and sign-ins/s through HTTP vs argon2id hashing alone.

Every registration and sign-in spends one argon2id computation at the default
cost, so the ratio to bare hashing (same concurrency, same machine) shows
what identity adds around it: the transaction, the sealed events, the token.
Token verifications/s is what every service pays per request (offline, cached key).

"Known vs unknown e-mail": the median latency of a wrong-password sign-in and
of a reset request, for addresses with an account and for addresses without
one, one request at a time with the two kinds interleaved, printed side by
side. The answers must not tell the two apart, by content or by time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any
from uuid import uuid4

import httpx
from asgi_lifespan import LifespanManager

from guestlist.stack.kafka import create_topics
from guestlist.stack.postgres import ExternalPostgres, PostgresServer
from guestlist.stack.topology import stack_topics
from services.identity.bootstrap import build_app
from services.identity.passwords import hash_password
from services.identity.settings import IdentitySettings

PASSWORD = "bench password, long enough"


async def _rate(count: int, concurrency: int, one: Any) -> float:
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def _without_request_id(answer: httpx.Response) -> str:
    """The answer's body as compared: a problem's request_id differs on every request."""
    if not answer.content:
        return ""
    body = answer.json()
    body.pop("request_id", None)
    return json.dumps(body, sort_keys=True)


async def _known_vs_unknown(
    client: httpx.AsyncClient, known: list[str], *, samples: int
) -> dict[str, Any]:
    """Median latency (ms) per kind of address, and whether the answers were identical."""
    def wrong_password(address: str) -> dict[str, str]:
        return {"email": address, "password": "not the password at all"}

    def reset(address: str) -> dict[str, str]:
        return {"email": address}

    requests = {"sign_in_wrong_password": ("/v1/sessions", wrong_password),
                "reset_request": ("/v1/password-resets", reset)}
    figures: dict[str, Any] = {"samples_each": samples}
    for name, (path, body) in requests.items():
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        answers: dict[str, set[tuple[int, str]]] = {"known": set(), "unknown": set()}
        for n in range(samples):
            pair = [("known", known[n % len(known)]),
                    ("unknown", f"nobody-{uuid4().hex[:10]}@example.org")]
            for kind, address in pair if n % 2 else reversed(pair):
                started = time.perf_counter()
                answer = await client.post(path, json=body(address))
                times[kind].append(time.perf_counter() - started)
                answers[kind].add((answer.status_code, _without_request_id(answer)))
        figures[name] = {
            "known_ms": round(statistics.median(times["known"]) * 1000, 2),
            "unknown_ms": round(statistics.median(times["unknown"]) * 1000, 2),
            "same_answers": answers["known"] == answers["unknown"],
        }
    return figures


async def run(pg: PostgresServer | ExternalPostgres, kafka_bootstrap: str, *, users: int = 200,
              concurrency: int = 8, timing_samples: int = 200) -> dict[str, Any]:
    database_url = await pg.create_database(f"bench_identity_{uuid4().hex[:8]}")
    await create_topics(kafka_bootstrap, stack_topics())
    # One client sends every request: no lockout and no per-client reset limit in the way.
    settings = IdentitySettings(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                                lockout_threshold=1000, reset_request_limit=1_000_000)
    app = build_app(settings)
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            await app.state.identity.accounts.create_admin(
                email="bench-admin@example.org", password=PASSWORD, force=True)
            admin = (await client.post("/v1/sessions", json={
                "email": "bench-admin@example.org", "password": PASSWORD})).json()
            await client.put("/v1/platform/settings", json={
                "name": "Bench", "requires_invitation": False, "time_zone": "UTC",
                "default_locale": "en", "dormant_after_days": 365,
            }, headers={"Authorization": f"Bearer {admin['access_token']}"})
            emails = [f"user-{uuid4().hex[:10]}@example.org" for _ in range(users)]

            async def hash_one(n: int) -> None:
                await hash_password(PASSWORD)

            async def register(n: int) -> None:
                answer = await client.post("/v1/users",
                                           json={"email": emails[n], "password": PASSWORD})
                assert answer.status_code == 201, answer.text

            hashing = await _rate(users, concurrency, hash_one)
            registrations = await _rate(users, concurrency, register)
            # Sign-ins need active accounts: confirm through the database's pending tokens.
            pool = app.state.identity.accounts.work.store.pool
            user_ids = [r["user_id"] for r in await pool.fetch(
                "SELECT user_id FROM one_time_tokens WHERE purpose = 'confirm_email'")]
            for user_id in user_ids:
                async with app.state.identity.accounts.work.store.transaction() as tx:
                    user = await app.state.identity.accounts.work.load_user(tx, user_id)
                    await app.state.identity.accounts.work.append_to_user(
                        tx, user, user.confirm_email(), actor=user_id)
            tokens: list[str] = []

            async def sign_in(n: int) -> None:
                answer = await client.post("/v1/sessions",
                                           json={"email": emails[n], "password": PASSWORD})
                assert answer.status_code == 201, answer.text
                tokens.append(answer.json()["access_token"])

            sign_ins = await _rate(users, concurrency, sign_in)
            verifier = app.state.token_verifier
            await verifier.verify(tokens[0])
            started = time.perf_counter()
            verified = 0
            while time.perf_counter() - started < 2.0:
                for token in tokens:
                    await verifier.verify(token)
                verified += len(tokens)
            verifications = verified / (time.perf_counter() - started)
            known_vs_unknown = await _known_vs_unknown(client, emails, samples=timing_samples)
    return {
        "users": users, "concurrency": concurrency,
        "argon2id_hashes_per_s": round(hashing, 1),
        "registrations_per_s": round(registrations, 1),
        "registration_vs_hashing": round(registrations / hashing, 3),
        "sign_ins_per_s": round(sign_ins, 1),
        "sign_in_vs_hashing": round(sign_ins / hashing, 3),
        "token_verifications_per_s": round(verifications),
        "known_vs_unknown_email": known_vs_unknown,
    }
