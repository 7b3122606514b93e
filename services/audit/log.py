"""The audit_log table: append a batch under the chain-head lock, read entries back.

An append is at most five statements whatever the batch size: drop events
already in the log, lock the chain head, insert every entry with one
``unnest``, the people the entries name (services/audit/people.py) with
another, move the head. The lock serializes appenders, which is what makes the sequence gapless
and each prev_hash the hash of the entry before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from eventkit.database import Connection
from eventkit.envelope import SPEC_VERSION
from eventkit.inbox import Delivery
from services.audit.domain import ChainedEntry, LogEntry, chain
from services.audit.people import also_concerned

_INSERT = """
INSERT INTO audit_log (sequence, received_at, topic, kafka_partition, kafka_offset,
                       ce_specversion, ce_id, ce_source, ce_type, ce_subject, ce_time,
                       ce_actorid, ce_sequence, ce_traceparent, ce_extensions, data,
                       prev_hash, hash)
SELECT s, $2, t, p, o, $3, i, src, ty, sub, tm, act, seq, tp, ext::jsonb, d, ph, h
FROM unnest($1::bigint[], $4::text[], $5::integer[], $6::bigint[], $7::uuid[], $8::text[],
            $9::text[], $10::text[], $11::timestamptz[], $12::text[], $13::bigint[],
            $14::text[], $15::text[], $16::text[], $17::bytea[], $18::bytea[])
     AS e(s, t, p, o, i, src, ty, sub, tm, act, seq, tp, ext, d, ph, h)
"""

ENTRY_COLUMNS = (
    "sequence, received_at, topic, kafka_partition, kafka_offset, ce_specversion, ce_id, "
    "ce_source, ce_type, ce_subject, ce_time, ce_actorid, ce_sequence, ce_traceparent, "
    "ce_extensions::text AS ce_extensions, data, prev_hash, hash"
)


async def append(
    connection: Connection, deliveries: Sequence[Delivery], *, received_at: datetime
) -> list[ChainedEntry]:
    """Append the events not yet in the log, in order; the caller's transaction commits."""
    known = {
        row["ce_id"]
        for row in await connection.fetch(
            "SELECT ce_id FROM audit_log WHERE ce_id = ANY($1::uuid[])",
            [d.envelope.id for d in deliveries],
        )
    }
    fresh: list[Delivery] = []
    for delivery in deliveries:
        if delivery.envelope.id not in known:
            known.add(delivery.envelope.id)
            fresh.append(delivery)
    if not fresh:
        return []
    head = await connection.fetchrow(
        "SELECT sequence, hash FROM audit_chain_head FOR UPDATE"
    )
    assert head is not None, "the migration inserts the chain head"
    entries = [
        LogEntry(
            sequence=head["sequence"] + n,
            received_at=received_at,
            topic=d.message.topic,
            partition=d.message.partition,
            offset=d.message.offset,
            ce_id=d.envelope.id,
            ce_source=d.envelope.source,
            ce_type=d.envelope.type,
            ce_subject=d.envelope.subject,
            ce_time=d.envelope.time,
            ce_actorid=d.envelope.actor_id,
            ce_sequence=d.envelope.sequence,
            data=d.envelope.data_json,
            ce_traceparent=d.envelope.traceparent,
            ce_extensions=dict(d.envelope.extensions),
        )
        for n, d in enumerate(fresh, start=1)
    ]
    chained = chain(entries, prev_hash=bytes(head["hash"]))
    await connection.execute(
        _INSERT,
        [c.entry.sequence for c in chained],
        received_at,
        SPEC_VERSION,
        [c.entry.topic for c in chained],
        [c.entry.partition for c in chained],
        [c.entry.offset for c in chained],
        [c.entry.ce_id for c in chained],
        [c.entry.ce_source for c in chained],
        [c.entry.ce_type for c in chained],
        [c.entry.ce_subject for c in chained],
        [c.entry.ce_time for c in chained],
        [c.entry.ce_actorid for c in chained],
        [c.entry.ce_sequence for c in chained],
        [c.entry.ce_traceparent for c in chained],
        [json.dumps(dict(c.entry.ce_extensions)) for c in chained],
        [c.entry.data for c in chained],
        [c.prev_hash for c in chained],
        [c.hash for c in chained],
    )
    concerned = [(person, c.entry.sequence) for c in chained
                 for person in also_concerned(c.entry.data, subject=c.entry.ce_subject,
                                              actor=c.entry.ce_actorid)]
    if concerned:
        await connection.execute(
            "INSERT INTO audit_log_people (person, sequence) "
            "SELECT * FROM unnest($1::text[], $2::bigint[])",
            [person for person, _ in concerned], [sequence for _, sequence in concerned],
        )
    last = chained[-1]
    await connection.execute(
        "UPDATE audit_chain_head SET sequence = $1, hash = $2", last.entry.sequence, last.hash
    )
    return chained


def entry_from_row(row: asyncpg.Record | Any) -> LogEntry:
    extensions = row["ce_extensions"]
    return LogEntry(
        sequence=row["sequence"],
        received_at=row["received_at"],
        topic=row["topic"],
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        ce_specversion=row["ce_specversion"],
        ce_id=row["ce_id"],
        ce_source=row["ce_source"],
        ce_type=row["ce_type"],
        ce_subject=row["ce_subject"],
        ce_time=row["ce_time"],
        ce_actorid=row["ce_actorid"],
        ce_sequence=row["ce_sequence"],
        ce_traceparent=row["ce_traceparent"],
        ce_extensions=json.loads(extensions) if extensions != "{}" else {},
        data=row["data"],
    )


async def head(connection: Connection | asyncpg.Pool[Any]) -> tuple[int, bytes]:
    row = await connection.fetchrow("SELECT sequence, hash FROM audit_chain_head")
    assert row is not None
    return int(row["sequence"]), bytes(row["hash"])
