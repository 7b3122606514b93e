"""Recompute one span of the chain: the part of a verification one process does.

A span reads its entries as one text each (``PACKED_ENTRY``: the columns
joined by a separator, times already in canonical text, formatted by
PostgreSQL exactly as ``canonical_time`` writes them) through a server-side
cursor, starting from the stored hash of the entry before it, and feeds them
to ``ChainCheck.feed_packed`` while the next chunk is on its way. A long verification runs several
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

from services.audit.domain import GENESIS_HASH, UNIT_SEPARATOR, ChainCheck

if TYPE_CHECKING:  # a worker process starts with as few imports as it can
    from eventkit.database import Connection

CHUNK = 20_000
# Rows hashed between two looks at the socket, so the next chunk is taken in as it comes.
SLICE = 2_000
_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# One text per entry, as ChainCheck.feed_packed takes it: receiving one column
# costs a fraction of eighteen. concat_ws writes integers in decimal and skips
# nulls, hence the traceparent's "v" prefix ("" is null).
PACKED_ENTRY = (
    "concat_ws(E'\\x1f', sequence, "
    f"{_TIME.format('received_at')}, topic, kafka_partition, kafka_offset, ce_specversion, "
    f"ce_id, ce_source, ce_type, ce_subject, {_TIME.format('ce_time')}, ce_actorid, "
    "ce_sequence, coalesce('v' || ce_traceparent, ''), ce_extensions, data, "
    "encode(prev_hash, 'hex'), encode(hash, 'hex'))"
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
        f"SELECT {PACKED_ENTRY} FROM audit_log WHERE sequence BETWEEN $1 AND $2 "
        "ORDER BY sequence", first, last,
    )
    # The next chunk is asked for before this one is hashed: PostgreSQL reads and
    # formats it on another core meanwhile, and it is received between slices.
    pending: asyncio.Future[list[Any]] = asyncio.ensure_future(cursor.fetch(CHUNK))
    try:
        while rows := await pending:
            pending = asyncio.ensure_future(cursor.fetch(CHUNK))
            await asyncio.sleep(0)  # the request leaves now
            start = 0
            while start < len(rows):
                part = rows[start:start + SLICE]
                consumed = check.feed_packed(part)
                start += consumed
                if consumed < len(part):  # a value holds the separator: read it as columns
                    following = await pending  # one query at a time on a connection
                    await _feed_columns(connection, check, rows[start])
                    start += 1
                    pending = asyncio.get_running_loop().create_future()
                    pending.set_result(following)
                await asyncio.sleep(0)
    finally:
        pending.cancel()
    if check.next_sequence <= last:
        check.fail(check.next_sequence, f"sequence {check.next_sequence} is missing")
    return check


async def _feed_columns(connection: Connection, check: ChainCheck, packed: Any) -> None:
    """Feed the entry of a packed row that could not be split, read column by column."""
    from services.audit import log  # rare: a worker imports it only when needed

    row = await connection.fetchrow(
        f"SELECT {log.ENTRY_COLUMNS} FROM audit_log WHERE sequence = $1",
        int(packed[0].split(UNIT_SEPARATOR, 1)[0]),
    )
    assert row is not None, "the row was just read in the same transaction"
    check.feed(log.entry_from_row(row), bytes(row["prev_hash"]), bytes(row["hash"]))


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
