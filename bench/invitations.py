"""Invitations throughput over HTTP, single and bulk, and a 10,000-row CSV end to end.

- single: ``POST /v1/invitations`` against the service in uvicorn on a real
  port, 1 and 16 concurrent clients, invitations/s; beside it, the peer: the
  same InvitationCreated events appended straight to eventkit's store (no
  HTTP, no rules, no lookup row, no encryption);
- bulk: one CSV upload of ``rows`` rows (default 10,000), invitations/s from
  the upload until the batch reports every row done;
- csv_to_kafka: seconds from the upload until every InvitationCreated of the
  batch was read back from Kafka;
- lookup: public ``GET /v1/invitations/lookup`` with 16 clients from one
  address (every request counts on the same row of the shared limit), for an
  unknown code (the counter's upsert and one select) and a known one (plus
  the history, the greeting's decryption and the PersonalDataViewed append);
  beside it, the peer: the counter's upsert alone through asyncpg, on one row
  and on a row per writer.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore
from eventkit.store import NewEvent
from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from guestlist.stack.postgres import ExternalPostgres, PostgresServer
from schemas.catalog import build_registry
from schemas.invitations import InvitationCreated
from schemas.permissions import ROLE_PERMISSIONS
from services.invitations.bootstrap import MIGRATIONS, build_app
from services.invitations.settings import InvitationsSettings

TOPIC = "invitations.invitation"
PARTITIONS = 3


async def _single(client: httpx.AsyncClient, headers: dict[str, str], count: int,
                  concurrency: int) -> float:
    run = uuid4().hex[:8]
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            answer = await client.post(
                "/v1/invitations", headers=headers,
                json={"invitee_email": f"single-{run}-{n}@example.org", "greeting": "Hi!"},
            )
            if answer.status_code != 201:
                raise RuntimeError(f"create answered {answer.status_code}: {answer.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _bare_append(dsn: str, count: int, concurrency: int) -> float:
    """The peer: the same events, appended with no HTTP and no rules."""
    import asyncpg

    await apply_migrations(dsn, MIGRATIONS)
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    registry = build_registry()
    store = PostgresEventStore(pool)
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            invitation_id = uuid4()
            event = InvitationCreated(
                invitation_id=invitation_id, invitee_email="pd1:x:AAAA", inviter_id=uuid4(),
                locale="en", valid_from="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
                valid_until="2026-02-01T00:00:00Z",  # type: ignore[arg-type]
                code_hash="0" * 64,
            )
            await store.append(str(invitation_id), 0, [NewEvent(
                type=event.event_type, topic=event.topic, data_json=registry.encode(event))],
                actor_id="bench")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)
    finally:
        await pool.close()


async def _end_offsets(bootstrap: str) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    # run() created the topic with PARTITIONS partitions.
    partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    for partition, offset in ends.items():
        consumer.seek(partition, offset)
    return consumer, ends


async def _created_of_batch(consumer: AIOKafkaConsumer, batch_id: str, rows: int) -> None:
    seen = 0
    while seen < rows:
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        for records in batches.values():
            for record in records:
                headers = dict(record.headers)
                if headers.get("ce_type", b"").endswith(b"InvitationCreated.v1") and (
                    json.loads(record.value).get("batch_id") == batch_id
                ):
                    seen += 1


async def _bulk(client: httpx.AsyncClient, headers: dict[str, str], bootstrap: str,
                rows: int) -> dict[str, float]:
    run = uuid4().hex[:8]
    csv = "invitee_email,community_role,locale,greeting\n" + "".join(
        f"bulk-{run}-{n}@example.org,community_contributor,en,Welcome!\n" for n in range(rows)
    )
    consumer, _ = await _end_offsets(bootstrap)
    try:
        started = time.perf_counter()
        answer = await client.post(
            "/v1/invitations/bulk", content=csv, headers={**headers, "Content-Type": "text/csv"}
        )
        if answer.status_code != 202:
            raise RuntimeError(f"bulk answered {answer.status_code}: {answer.text}")
        batch_id = answer.json()["batch_id"]
        on_kafka = asyncio.create_task(_created_of_batch(consumer, batch_id, rows))
        while True:
            progress = (await client.get(f"/v1/invitations/bulk/{batch_id}",
                                         params={"limit": 0}, headers=headers)).json()
            if progress["completed_at"] is not None:
                break
            await asyncio.sleep(0.2)
        processed = time.perf_counter() - started
        if progress["created"] != rows:
            raise RuntimeError(f"bulk created {progress['created']} of {rows}")
        await asyncio.wait_for(on_kafka, timeout=300)
        to_kafka = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"rows": rows, "invitations_per_s": round(rows / processed, 1),
            "upload_to_all_created_s": round(processed, 2),
            "upload_to_all_on_kafka_s": round(to_kafka, 2)}


async def _lookups(client: httpx.AsyncClient, code: str, count: int, concurrency: int) -> float:
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            answer = await client.get("/v1/invitations/lookup", params={"code": code})
            if answer.status_code not in (200, 404):
                raise RuntimeError(f"lookup answered {answer.status_code}: {answer.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _bare_counter(dsn: str, count: int, concurrency: int, *, one_row: bool) -> float:
    """The peer of the lookup limit: its upsert alone, ``count`` times over ``concurrency``."""
    import asyncpg

    from services.invitations.lookup_limit import lookup_limit

    limit = lookup_limit(10**9, timedelta(minutes=1))
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    queue = iter(range(count))

    async def worker(n: int) -> None:
        client = "one" if one_row else f"client-{n}"
        for _ in queue:
            await limit.check(pool, client_hash=client, now=datetime.now(UTC))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return count / (time.perf_counter() - started)
    finally:
        await pool.close()


async def run(
    pg: PostgresServer | ExternalPostgres, bootstrap: str, *, single: int = 2000,
    rows: int = 10_000, lookups: int = 2000,
) -> dict[str, Any]:
    prefix = f"bench{uuid4().hex[:6]}"
    await create_topics(bootstrap, {TOPIC: PARTITIONS, "invitations.access": PARTITIONS,
                                    f"{prefix}.identity.user": 3,
                                    f"{prefix}.identity.platform": 3,
                                    f"{prefix}.notifications.delivery": 3})
    dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    peer_dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    key = SigningKey("bench")
    token = key.mint(sub=str(UUID(int=1)), exp=int(time.time()) + 3600,
                     permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
    headers = {"Authorization": f"Bearer {token}"}
    async with serve_jwks(key) as jwks:
        settings = InvitationsSettings(
            database_url=dsn, kafka_bootstrap=bootstrap, identity_jwks_url=jwks.url,
            user_topic=f"{prefix}.identity.user",
            delivery_topic=f"{prefix}.notifications.delivery",
            platform_topic=f"{prefix}.identity.platform",
            scheduler_interval=3600, log_level="WARNING", bulk_max_rows=max(rows, 10_000),
            lookup_rate_limit=10**9,
        )
        limits = httpx.Limits(max_connections=32)
        async with serving(build_app(settings), log_level="warning") as base_url, \
                httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
            http_1 = await _single(client, headers, single // 4, 1)
            http_16 = await _single(client, headers, single, 16)
            bulk = await _bulk(client, headers, bootstrap, rows)
            known = (await client.post(
                "/v1/invitations", headers=headers,
                json={"invitee_email": f"lookup-{prefix}@example.org", "greeting": "Hi!"},
            )).json()["code"]
            lookup_unknown = await _lookups(client, "A" * 32, lookups, 16)
            lookup_known = await _lookups(client, known, lookups, 16)
    bare_1 = await _bare_append(peer_dsn, single // 4, 1)
    bare_16 = await _bare_append(peer_dsn, single, 16)
    counter_one_row = await _bare_counter(peer_dsn, lookups, 16, one_row=True)
    counter_own_rows = await _bare_counter(peer_dsn, lookups, 16, one_row=False)
    return {
        "single_http_per_s": {"1_client": round(http_1, 1), "16_clients": round(http_16, 1)},
        "peer_bare_append_per_s": {"1_writer": round(bare_1, 1), "16_writers": round(bare_16, 1)},
        "bulk": bulk,
        "lookup_http_per_s_16_clients": {"unknown_code": round(lookup_unknown, 1),
                                         "known_code": round(lookup_known, 1)},
        "peer_limit_upsert_per_s_16_writers": {"one_row": round(counter_one_row, 1),
                                               "a_row_each": round(counter_own_rows, 1)},
    }
