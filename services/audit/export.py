"""Exports that a third party can verify offline, streamed in constant memory.

An NDJSON export is one JSON object per line, in log order, from ``from`` up to
the checkpoint that covers ``to``:

- an entry that matches the filters: its canonical object plus ``prev_hash``
  and ``hash``;
- an entry that does not (or lies past ``to``): only ``sequence``,
  ``entry_sha256``, ``prev_hash`` and ``hash``, so the chain stays whole
  without revealing it;
- last, ``{"checkpoint": {...}, "public_key": ...}``: the signed head.

``services/audit/offline.py`` verifies such a file with nothing but the file
and the public key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from services.audit import checkpoints, log
from services.audit.checkpoints import Checkpoint, CheckpointSigner
from services.audit.verification import RangeError

Format = Literal["ndjson", "csv"]
CHUNK = 2000
_CSV_COLUMNS = (
    "sequence", "received_at", "topic", "partition", "offset", "ce_specversion", "ce_id",
    "ce_source", "ce_type", "ce_subject", "ce_time", "ce_actorid", "ce_sequence",
    "ce_traceparent", "ce_extensions", "data", "entry_sha256", "prev_hash", "hash",
)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    first: int | None = None
    last: int | None = None
    type: str | None = None
    subject: str | None = None
    format: Format = "ndjson"

    def filters(self) -> dict[str, str]:
        found = {"from": self.first, "to": self.last, "type": self.type,
                 "subject": self.subject, "format": self.format}
        return {name: str(value) for name, value in found.items() if value is not None}


@dataclass(slots=True)
class ExportResult:
    """Filled in while the export streams; complete once the stream ended."""

    entries: int = 0
    sha256: str = ""
    checkpoint: Checkpoint | None = None


async def plan(
    pool: asyncpg.Pool[Any], signer: CheckpointSigner, request: ExportRequest
) -> tuple[int, int, Checkpoint]:
    """The range to read and the checkpoint that covers it (signed now if none does yet)."""
    head, _ = await log.head(pool)
    first = request.first or 1
    last = head if request.last is None else request.last
    if head == 0:
        raise RangeError("to", "the log is empty")
    if last > head:
        raise RangeError("to", f"to is past the head of the log ({head})")
    if first > last:
        raise RangeError("from", "from must not be after to")
    checkpoint = await checkpoints.covering(pool, last)
    if checkpoint is None:
        checkpoint = await checkpoints.sign_head(pool, signer)
    assert checkpoint is not None and checkpoint.sequence >= last
    return first, last, checkpoint


async def stream(
    pool: asyncpg.Pool[Any], signer: CheckpointSigner, request: ExportRequest,
    first: int, last: int, checkpoint: Checkpoint, result: ExportResult,
) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    csv_buffer = io.StringIO()
    writer = csv.writer(csv_buffer, lineterminator="\n")

    def emit(text: str) -> bytes:
        data = text.encode()
        digest.update(data)
        return data

    if request.format == "csv":
        writer.writerow(_CSV_COLUMNS)
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        cursor = await connection.cursor(
            f"SELECT {log.ENTRY_COLUMNS} FROM audit_log WHERE sequence BETWEEN $1 AND $2 "
            "ORDER BY sequence", first, checkpoint.sequence,
        )
        while rows := await cursor.fetch(CHUNK):
            lines: list[str] = []
            for row in rows:
                entry = log.entry_from_row(row)
                prev_hash, hash_ = bytes(row["prev_hash"]).hex(), bytes(row["hash"]).hex()
                shown = (entry.sequence <= last
                         and request.type in (None, entry.ce_type)
                         and request.subject in (None, entry.ce_subject))
                if shown:
                    result.entries += 1
                if request.format == "csv":
                    values: dict[str, Any] = (entry.canonical_object() if shown
                                              else {"sequence": entry.sequence})
                    values |= {"entry_sha256": entry.digest().hex(), "prev_hash": prev_hash,
                               "hash": hash_}
                    if shown:
                        values["ce_extensions"] = json.dumps(values["ce_extensions"])
                    writer.writerow([values.get(column, "") for column in _CSV_COLUMNS])
                elif shown:
                    lines.append(json.dumps(
                        {**entry.canonical_object(), "prev_hash": prev_hash, "hash": hash_},
                        ensure_ascii=False, separators=(",", ":")))
                else:
                    lines.append(json.dumps(
                        {"sequence": entry.sequence, "entry_sha256": entry.digest().hex(),
                         "prev_hash": prev_hash, "hash": hash_}, separators=(",", ":")))
            if request.format == "csv":
                yield emit(csv_buffer.getvalue())
                csv_buffer.seek(0)
                csv_buffer.truncate()
            else:
                yield emit("\n".join(lines) + "\n")
    trailer = {"checkpoint": checkpoint.as_json(), "public_key": signer.public_key_base64()}
    if request.format == "csv":
        writer.writerow(["checkpoint", json.dumps(trailer, separators=(",", ":"))])
        yield emit(csv_buffer.getvalue())
    else:
        yield emit(json.dumps(trailer, separators=(",", ":")) + "\n")
    result.sha256 = digest.hexdigest()
    result.checkpoint = checkpoint
