"""A person's timeline holds the entries whose data names them, not only those they are the
subject or actor of; the people are indexed at ingest and, for older entries, by the migration."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from eventkit.envelope import Envelope
from eventkit.migrations import apply_migrations
from eventkit.personal_data import encrypt_value, new_data_key
from services.audit.bootstrap import MIGRATIONS
from services.audit.people import also_concerned
from tests.integration.test_audit_api import Audit, Topics, audit_service

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> AsyncIterator[Audit]:
    async with audit_service(database_url, kafka_bootstrap, kafka_topics, tmp_path) as running:
        yield running


def event(kind: str, subject: str, data: dict[str, Any], *, actor: str = "system") -> Envelope:
    return Envelope(id=uuid4(), type=f"guestlist.{kind}.v1", subject=subject,
                    time=datetime.now(UTC), actor_id=actor, sequence=1,
                    data_json=json.dumps(data))


async def test_the_timeline_holds_what_names_the_person_in_data(audit: Audit) -> None:
    alice = str(uuid4())
    key = audit.keys.keys[alice] = new_data_key()
    sealed = encrypt_value("alice@example.org", subject_id=alice, key=key)
    events = [
        event("identity.UserRegistered", alice, {"user_id": alice, "email": sealed}),
        event("invitations.InvitationAccepted", "inv-1", {"invitation_id": "inv-1",
                                                          "user_id": alice}),
        event("identity.RoleGranted", "bob", {"user_id": "bob", "role": "organizer",
                                              "granted_by": alice}),
        event("identity.UserProfileUpdated", "bob", {"user_id": "bob", "name": "Bob"}),
        event("notifications.NotificationSent", "n-1", {
            "recipient_user_id": alice, "recipient_email": sealed, "template": "welcome"}),
        event("invitations.InvitationCreated", "inv-2", {"invitee_email": sealed},
              actor="carol"),
    ]
    await audit.publish(events)
    pages, cursor = [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        answer = await audit.client.get(f"/v1/audit/subjects/{alice}/timeline", params=params,
                                        headers=audit.auth)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        if (cursor := answer.json()["next_cursor"]) is None:
            break
    items = [item for page in pages for item in page]

    assert [len(page) for page in pages] == [2, 2, 1]
    # Events with other keys land on other partitions: the log's order is the ingest order.
    assert [item["sequence"] for item in items] == sorted(item["sequence"] for item in items)
    by_type = {item["type"].split(".")[2]: item for item in items}
    assert {kind: (item["role"], item["named_in"]) for kind, item in by_type.items()} == {
        "UserRegistered": ("subject", ["email", "user_id"]),
        "InvitationAccepted": ("named", ["user_id"]),
        "RoleGranted": ("named", ["granted_by"]),
        "NotificationSent": ("named", ["recipient_email", "recipient_user_id"]),
        "InvitationCreated": ("named", ["invitee_email"]),
    }
    # each item carries its event's CloudEvents id, so a reader can match it exactly
    sent_ids = {e.type.split(".")[2]: str(e.id) for e in events}
    assert {kind: item["id"] for kind, item in by_type.items()} == {
        kind: sent_ids[kind] for kind in by_type}
    assert by_type["NotificationSent"]["data"]["recipient_email"] == "alice@example.org"
    assert by_type["InvitationCreated"]["data"]["invitee_email"] == "alice@example.org"


async def test_the_migration_indexes_the_people_older_entries_name(
    database_url: str, tmp_path: Path
) -> None:
    # The log as it was before audit_0003: its first two migrations only.
    before = tmp_path / "migrations"
    before.mkdir()
    for name in ("audit_0001_log.sql", "audit_0002_replays.sql"):
        shutil.copy(MIGRATIONS / name, before / name)
    await apply_migrations(database_url, before)
    sealed = "pd1:dave:AAAA"
    rows = [  # (subject, actor, data)
        ("inv-1", "system", {"invitation_id": "inv-1", "user_id": "alice"}),
        ("bob", "alice", {"user_id": "bob", "granted_by": "alice", "revoked_by": None}),
        ("n-1", "system", {"recipient_user_id": "carol", "recipient_email": sealed}),
        ("x", "system", {"inviter_id": "erin", "person_id": "frank", "subject_id": "gina",
                         "user_ids": "not-a-field-that-names", "note": "pd1:no-separator",
                         "nested": {"user_id": "hal"}, "count_by": 3, "made_by": "",
                         "long_by": "y" * 201}),
        ("y", "system", {}),
    ]
    db = await asyncpg.connect(database_url)
    try:
        for sequence, (subject, actor, data) in enumerate(rows, start=1):
            await db.execute(
                "INSERT INTO audit_log (sequence, received_at, topic, kafka_partition, "
                "kafka_offset, ce_specversion, ce_id, ce_source, ce_type, ce_subject, ce_time, "
                "ce_actorid, ce_sequence, data, prev_hash, hash) VALUES ($1, now(), 't', 0, $1, "
                "'1.0', $2, '/guestlist/x', 'guestlist.x.Y.v1', $3, now(), $4, 1, $5, $6, $6)",
                sequence, uuid4(), subject, actor, json.dumps(data), bytes(32))
        await apply_migrations(database_url, MIGRATIONS)
        indexed = await db.fetch("SELECT person, sequence FROM audit_log_people")
    finally:
        await db.close()

    expected = {(person, sequence) for sequence, (subject, actor, data) in enumerate(rows, 1)
                for person in also_concerned(json.dumps(data), subject=subject, actor=actor)}
    assert {(r["person"], r["sequence"]) for r in indexed} == expected == {
        ("alice", 1), ("carol", 3), ("dave", 3), ("erin", 4), ("frank", 4), ("gina", 4)}
