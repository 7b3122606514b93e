"""Recompute the chain and check the checkpoints' signatures over a range of the log.

Entries are read through a server-side cursor in chunks, so any range
verifies in constant memory. The report names the first bad sequence: the
first entry whose content, link or place in the sequence is wrong, or the
first checkpoint whose signature or signed hash does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit import checkpoints, log
from services.audit.domain import GENESIS_HASH, ChainCheck

CHUNK = 5000


class RangeError(ValueError):
    """``from``/``to`` do not describe a part of the log; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int
    first: int
    last: int
    head_sequence: int
    head_hash: str | None
    first_bad_sequence: int | None
    reason: str | None
    checkpoints_checked: int

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "checked": self.checked, "from": self.first, "to": self.last,
            "head": {"sequence": self.head_sequence, "hash": self.head_hash},
            "first_bad_sequence": self.first_bad_sequence, "reason": self.reason,
            "checkpoints_checked": self.checkpoints_checked,
        }


async def verify(
    pool: asyncpg.Pool[Any], public_key: Ed25519PublicKey, *, first: int | None = None,
    last: int | None = None,
) -> VerifyReport:
    head_sequence, head_hash = await log.head(pool)
    first = 1 if first is None else first
    last = head_sequence if last is None else last
    if first < 1:
        raise RangeError("from", "from must be 1 or more")
    if last > head_sequence:
        raise RangeError("to", f"to is past the head of the log ({head_sequence})")
    if first > last and head_sequence > 0:
        raise RangeError("from", "from must not be after to")
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        prev = GENESIS_HASH if first == 1 else await connection.fetchval(
            "SELECT hash FROM audit_log WHERE sequence = $1", first - 1
        )
        check = ChainCheck(prev_hash=bytes(prev) if prev is not None else GENESIS_HASH,
                           next_sequence=first)
        if prev is None:
            check.fail(first - 1, f"sequence {first - 1} is missing")
        signed = await checkpoints.in_range(connection, first, last)
        check.wanted = {c.sequence for c in signed}
        cursor = await connection.cursor(
            f"SELECT {log.ENTRY_COLUMNS} FROM audit_log "
            "WHERE sequence BETWEEN $1 AND $2 ORDER BY sequence", first, last,
        )
        while rows := await cursor.fetch(CHUNK):
            for row in rows:
                check.feed(log.entry_from_row(row), bytes(row["prev_hash"]), bytes(row["hash"]))
        if check.next_sequence <= last:
            check.fail(check.next_sequence, f"sequence {check.next_sequence} is missing")
    for checkpoint in signed:
        if not checkpoint.verifies_with(public_key):
            check.fail(checkpoint.sequence, "checkpoint signature does not verify")
        elif check.found.get(checkpoint.sequence) != checkpoint.head_hash:
            check.fail(checkpoint.sequence, "entry hash differs from the signed checkpoint")
    return VerifyReport(
        ok=check.ok, checked=check.checked, first=first, last=last,
        head_sequence=head_sequence, head_hash=head_hash.hex() if head_sequence else None,
        first_bad_sequence=check.first_bad, reason=check.reason,
        checkpoints_checked=len(signed),
    )
