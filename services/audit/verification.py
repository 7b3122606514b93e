"""Recompute the chain and check the checkpoints' signatures over a range of the log.

Entries are read through a server-side cursor in chunks, so any range
verifies in constant memory; long ranges are split over several processes
(services/audit/recompute.py). The report names the first bad sequence: the
first entry whose content, link or place in the sequence is wrong, or the
first checkpoint whose signature or signed hash does not hold.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit import checkpoints, log
from services.audit.recompute import Span, check_as_json, recompute, recompute_in_process

# Below this many entries one process is quicker than starting others.
PARALLEL_MIN = 100_000


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
    last: int | None = None, dsn: str | None = None, processes: int = 1,
    parallel_min: int = PARALLEL_MIN,
) -> VerifyReport:
    """Check entries ``first``..``last`` and the checkpoints among them.

    With a ``dsn`` and ``processes`` > 1, a range of at least ``parallel_min``
    entries is cut into that many spans, each recomputed in its own process
    from the stored hash before it, all in one snapshot; span k's first entry
    must link to that stored hash, and span k-1 recomputes it, so the
    boundaries are checked as any other link.
    """
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
        signed = await checkpoints.in_range(connection, first, last)
        wanted = frozenset(c.sequence for c in signed)
        spans = split(first, last, processes if dsn is not None else 1, parallel_min)
        if len(spans) == 1:
            check = await recompute(connection, Span(first, last, wanted))
            results = [check_as_json(check)]
        else:
            assert dsn is not None
            snapshot = await connection.fetchval("SELECT pg_export_snapshot()")
            results = list(await asyncio.gather(*(
                recompute_in_process(dsn=dsn, snapshot=snapshot, span=Span(
                    span.first, span.last, frozenset(s for s in wanted
                                                     if span.first <= s <= span.last)))
                for span in spans
            )))
    bad = min(((r["first_bad"], r["reason"]) for r in results if r["first_bad"] is not None),
              default=(None, None))
    found = {int(sequence): bytes.fromhex(hash_) for r in results
             for sequence, hash_ in r["found"].items()}
    first_bad, reason = bad
    for checkpoint in signed:
        if not checkpoint.verifies_with(public_key):
            failure = (checkpoint.sequence, "checkpoint signature does not verify")
        elif found.get(checkpoint.sequence) != checkpoint.head_hash:
            failure = (checkpoint.sequence, "entry hash differs from the signed checkpoint")
        else:
            continue
        if first_bad is None or failure[0] < first_bad:
            first_bad, reason = failure
    return VerifyReport(
        ok=first_bad is None, checked=sum(r["checked"] for r in results), first=first,
        last=last, head_sequence=head_sequence,
        head_hash=head_hash.hex() if head_sequence else None,
        first_bad_sequence=first_bad, reason=reason, checkpoints_checked=len(signed),
    )


def split(first: int, last: int, processes: int, parallel_min: int = PARALLEL_MIN) -> list[Span]:
    """``first``..``last`` in up to ``processes`` equal spans of ``parallel_min`` / 2 or more."""
    size = last - first + 1
    if processes < 2 or size < parallel_min:
        return [Span(first, last)]
    parts = min(processes, size // max(1, parallel_min // 2))
    step = -(-size // parts)
    return [Span(start, min(last, start + step - 1)) for start in range(first, last + 1, step)]
