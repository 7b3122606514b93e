"""`guestlist audit verify|export|replay` against a real log: tampering found at its
sequence, an exported file that verifies offline, a range replayed in order."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from eventkit.envelope import Envelope
from eventkit.migrations import apply_migrations
from guestlist.stack.kafka import create_topics
from services.audit import log
from services.audit.bootstrap import MIGRATIONS
from services.audit.checkpoints import CheckpointSigner
from services.audit.offline import verify_lines
from tests.integration.test_audit_log_immutable import delivery

pytestmark = pytest.mark.integration


async def guestlist(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "guestlist"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_verify_finds_the_edit_and_export_writes_a_verifiable_file(
    database_url: str, tmp_path: Path
) -> None:
    await apply_migrations(database_url, MIGRATIONS)
    key_file = tmp_path / "key.pem"
    signer = CheckpointSigner.from_file(key_file)
    db = await asyncpg.connect(database_url)
    try:
        async with db.transaction():
            await log.append(db, [delivery(n) for n in range(1, 31)],
                             received_at=datetime.now(UTC))
        common = ("--database-url", database_url, "--key-file", str(key_file))
        exported = tmp_path / "audit.ndjson"
        export_code, export_out = await guestlist("audit", "export", str(exported), *common)
        intact_code, intact_out = await guestlist("audit", "verify", *common)
        await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await db.execute("UPDATE audit_log SET ce_actorid = 'mallory' WHERE sequence = 12")
        tampered_code, tampered_out = await guestlist("audit", "verify", *common)
    finally:
        await db.close()

    assert export_code == 0, export_out
    assert verify_lines(exported.read_text().splitlines(), signer.public_key_base64()).ok
    assert (intact_code, json.loads(intact_out)["checked"]) == (0, 30), intact_out
    assert tampered_code == 1
    assert json.loads(tampered_out)["first_bad_sequence"] == 12


async def test_replay_publishes_the_range_in_order_and_refuses_a_domain_topic(
    database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    await apply_migrations(database_url, MIGRATIONS)
    target = f"r{uuid4().hex[:10]}.cli.replay"
    await create_topics(kafka_bootstrap, {target: 1})
    db = await asyncpg.connect(database_url)
    try:
        async with db.transaction():
            appended = await log.append(db, [delivery(n) for n in range(1, 21)],
                                        received_at=datetime.now(UTC))
        common = ("--database-url", database_url, "--kafka-bootstrap", kafka_bootstrap)
        code, out = await guestlist("audit", "replay", *common, "--from", "3", "--to", "12",
                                    "--target-topic", target)
        refused, refusal = await guestlist("audit", "replay", *common,
                                           "--target-topic", "identity.user")
        announced = await db.fetchval(
            "SELECT count(*) FROM outbox JOIN events USING (position) "
            "WHERE events.type = 'guestlist.audit.AuditReplayStarted.v1'")
    finally:
        await db.close()
    consumer = AIOKafkaConsumer(target, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        messages: list[Any] = []
        async with asyncio.timeout(60):
            while len(messages) < 10:
                messages += [m for b in (await consumer.getmany(timeout_ms=500)).values()
                             for m in b]
    finally:
        await consumer.stop()

    assert code == 0, out
    report, _ = json.JSONDecoder().raw_decode(out, out.index("{"))
    assert (report["status"], report["total"], report["published"]) == ("completed", 10, 10)
    assert [Envelope.from_kafka(m.key, m.value, m.headers).id for m in messages] == [
        c.entry.ce_id for c in appended[2:12]]
    assert {dict(m.headers)["ce_replayid"].decode() for m in messages} == {report["replay_id"]}
    assert refused == 2 and "--target-topic" in refusal
    assert announced == 1
