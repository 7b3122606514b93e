"""Recompute one span of the chain: the part of a verification one process does.

A span reads its entries as compact rows (times already in canonical text,
formatted by PostgreSQL exactly as ``canonical_time`` writes them) through a
server-side cursor, starting from the stored hash of the entry before it, and
feeds them to ``ChainCheck.feed_rows``. A long verification runs several
spans at once, each in its own process (``python -m services.audit.recompute``,
asked on stdin and answering on stdout), all reading one exported snapshot.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from services.audit.domain import GENESIS_HASH, ChainCheck

if TYPE_CHECKING:  # a worker process starts with as few imports as it can
    from eventkit.database import Connection

CHUNK = 20_000
_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# The columns ChainCheck.feed_rows takes, in its order.
SCAN_COLUMNS = (
    f"sequence, {_TIME.format('received_at')}, topic, kafka_partition, kafka_offset, "
    f"ce_specversion, ce_id::text, ce_source, ce_type, ce_subject, {_TIME.format('ce_time')}, "
    "ce_actorid, ce_sequence, ce_traceparent, ce_extensions::text, data, prev_hash, hash"
)


@dataclass(frozen=True, slots=True)
class Span:
    """Entries ``first``..``last``; ``wanted`` are the sequences checkpoints sign."""

    first: int
    last: int
    wanted: frozenset[int] = frozenset()


async def recompute(connection: Connection, span: Span) -> ChainCheck:
    """Check ``span`` inside the caller's (repeatable read) transaction."""
    first, last = span.first, span.last
    prev = GENESIS_HASH if first == 1 else await connection.fetchval(
        "SELECT hash FROM audit_log WHERE sequence = $1", first - 1
    )
    check = ChainCheck(prev_hash=bytes(prev) if prev is not None else GENESIS_HASH,
                       next_sequence=first, wanted=set(span.wanted))
    if prev is None:
        check.fail(first - 1, f"sequence {first - 1} is missing")
    cursor = await connection.cursor(
        f"SELECT {SCAN_COLUMNS} FROM audit_log WHERE sequence BETWEEN $1 AND $2 "
        "ORDER BY sequence", first, last,
    )
    while rows := await cursor.fetch(CHUNK):
        check.feed_rows(rows)
        await asyncio.sleep(0)  # in a server: let other requests in between chunks
    if check.next_sequence <= last:
        check.fail(check.next_sequence, f"sequence {check.next_sequence} is missing")
    return check


def check_as_json(check: ChainCheck) -> dict[str, Any]:
    return {
        "checked": check.checked, "first_bad": check.first_bad, "reason": check.reason,
        "found": {str(sequence): hash_.hex() for sequence, hash_ in check.found.items()},
    }


async def _recompute_in_snapshot(request: dict[str, Any]) -> dict[str, Any]:
    connection = await asyncpg.connect(request["dsn"])
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            # The same data the coordinating transaction sees, whatever commits meanwhile.
            await connection.execute(f"SET TRANSACTION SNAPSHOT '{request['snapshot']}'")
            check = await recompute(connection, Span(
                request["first"], request["last"], frozenset(request["wanted"])))
    finally:
        await connection.close()
    return check_as_json(check)


async def recompute_in_process(
    *, dsn: str, snapshot: str, span: Span, python: str = sys.executable
) -> dict[str, Any]:
    """Run ``span`` in a new process reading ``snapshot``; its :func:`check_as_json`."""
    process = await asyncio.create_subprocess_exec(
        python, "-m", "services.audit.recompute", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    # The DSN may hold a password: stdin, never the command line.
    request = {"dsn": dsn, "snapshot": snapshot, "first": span.first, "last": span.last,
               "wanted": sorted(span.wanted)}
    out, err = await process.communicate(json.dumps(request).encode())
    if process.returncode != 0:
        raise RuntimeError(f"recomputing {span.first}..{span.last} failed: "
                           f"{err.decode(errors='replace')[-2000:]}")
    answer: dict[str, Any] = json.loads(out)
    return answer


if __name__ == "__main__":
    if not (snapshot := json.loads(sys.stdin.read()))["snapshot"].replace("-", "").isalnum():
        raise SystemExit("not a snapshot id")
    print(json.dumps(asyncio.run(_recompute_in_snapshot(snapshot))))
