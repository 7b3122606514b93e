"""Reads of the log: filtered, cursor-paginated entries and a person's timeline."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from eventkit.envelope import source_of
from eventkit.personal_data import (
    ERASED,
    KeyOwners,
    KeyResolver,
    decrypt_value,
    is_encrypted,
    subject_of,
)
from services.audit import log
from services.audit.domain import LogEntry
from services.audit.people import named_in


class BadCursor(ValueError):
    """The cursor was not one this service handed out."""


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"a1:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, sequence = text.partition(":")
        if version != "a1" or not sequence.isdigit():
            raise ValueError(text)
        return int(sequence)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise BadCursor("cursor is not one this service gave out") from error


@dataclass(frozen=True, slots=True)
class EventFilter:
    subject: str | None = None
    actor: str | None = None
    type: str | None = None
    service: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_text(self) -> dict[str, str]:
        return {name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in (("subject", self.subject), ("actor", self.actor),
                                    ("type", self.type), ("service", self.service),
                                    ("since", self.since), ("until", self.until))
                if value is not None}

    def where(self, args: list[Any]) -> str:
        clauses = []
        for column, value in (("ce_subject", self.subject), ("ce_actorid", self.actor),
                              ("ce_type", self.type)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        if self.service is not None:
            args.append(source_of(self.service))
            clauses.append(f"ce_source = ${len(args)}")
        if self.since is not None:
            args.append(self.since)
            clauses.append(f"ce_time >= ${len(args)}")
        if self.until is not None:
            args.append(self.until)
            clauses.append(f"ce_time < ${len(args)}")
        return " AND ".join(clauses) or "true"


def entry_json(entry: LogEntry, prev_hash: bytes, hash_: bytes) -> dict[str, Any]:
    return {**entry.canonical_object(), "prev_hash": prev_hash.hex(), "hash": hash_.hex()}


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


async def find_events(
    pool: asyncpg.Pool[Any], found: EventFilter, *, after: int, limit: int
) -> Page:
    args: list[Any] = [after, limit + 1]
    rows = await pool.fetch(
        f"SELECT {log.ENTRY_COLUMNS} FROM audit_log WHERE sequence > $1 AND {found.where(args)} "
        "ORDER BY sequence LIMIT $2", *args,
    )
    items = [entry_json(log.entry_from_row(r), bytes(r["prev_hash"]), bytes(r["hash"]))
             for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(items[-1]["sequence"]) if more else None)


async def reveal(
    data: Mapping[str, Any], keys: KeyResolver, *, source: str | None = None
) -> dict[str, Any]:
    """``data`` with every personal value in clear, or ERASED where its key is gone.

    With several key owners, an event of one of them (``source``) is opened with its keys.
    """
    if isinstance(keys, KeyOwners) and source is not None:
        keys = keys.of_source(source)
    opened = dict(data)
    for name, value in data.items():
        if is_encrypted(value):
            key = await keys.key_for(subject_of(value))
            opened[name] = ERASED if key is None else decrypt_value(value, key=key)
    return opened


async def timeline(
    pool: asyncpg.Pool[Any], person: str, keys: KeyResolver, *, after: int, limit: int
) -> Page:
    """Everything done to (subject) or by (actor) ``person``, or naming them, in log order.

    Each of the three indexes gives its first ``limit`` entries after the
    cursor; their union, cut at ``limit``, is the page.
    """
    rows = await pool.fetch(
        f"SELECT {log.ENTRY_COLUMNS} FROM audit_log WHERE sequence IN ("
        "(SELECT sequence FROM audit_log WHERE ce_subject = $1 AND sequence > $2 "
        " ORDER BY sequence LIMIT $3) UNION "
        "(SELECT sequence FROM audit_log WHERE ce_actorid = $1 AND sequence > $2 "
        " ORDER BY sequence LIMIT $3) UNION "
        "(SELECT sequence FROM audit_log_people WHERE person = $1 AND sequence > $2 "
        " ORDER BY sequence LIMIT $3)) ORDER BY sequence LIMIT $3",
        person, after, limit + 1,
    )
    items = []
    for row in rows[:limit]:
        data = json.loads(row["data"])
        named = sorted(name for name, who in named_in(data).items() if who == person)
        role = ("subject" if row["ce_subject"] == person
                else "actor" if row["ce_actorid"] == person else "named")
        items.append({
            "sequence": row["sequence"],
            "id": str(row["ce_id"]),
            "time": row["ce_time"].isoformat(),
            "type": row["ce_type"],
            "subject": row["ce_subject"],
            "actor": row["ce_actorid"],
            "role": role,
            "named_in": named,
            "data": (await reveal(data, keys, source=row["ce_source"])
                     if isinstance(data, dict) else data),
        })
    more = len(rows) > limit
    return Page(items, encode_cursor(items[-1]["sequence"]) if more else None)
