"""``Idempotency-Key`` for writes: a retried command gets the first answer.

The stored answer commits in the same transaction as the command's events.
If they committed separately, a crash between the two would let a retry run
the command a second time. So a handler does, on the connection of its
unit of work::

    fingerprint = await fingerprint_request(request, principal.subject)
    async with store.transaction() as tx:
        if key is not None:
            previous = await idempotency.claim(tx.connection, key, fingerprint)
            if previous is not None:
                return previous.to_response(replayed=True)
        ...  # decide and append events on tx
        answer = await idempotency.remember(tx.connection, key, 201, body)
    return answer.to_response()

``claim`` takes a transaction-scoped advisory lock on the key without
waiting: a second request with the same key while the first is still
running gets a 409 at once instead of queueing behind it. If the first
one rolls back, its claim disappears with it and the key is free again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response

from eventkit.database import Connection
from eventkit.http.problems import (
    IDEMPOTENCY_KEY_IN_USE,
    IDEMPOTENCY_KEY_REUSED,
    INVALID_IDEMPOTENCY_KEY,
    Problem,
)

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# First int4 of the two-key advisory lock, so these locks share no space with
# single-bigint locks such as the relay's leadership lock. ("IDMP" in ASCII.)
_LOCK_CLASS = 0x49444D50



@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_response(self, *, replayed: bool = False) -> Response:
        headers = dict(self.headers)
        media_type = headers.pop("content-type", "application/json")
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        return Response(
            content=self.body, status_code=self.status_code, headers=headers,
            media_type=media_type,
        )


def encode_body(body: Any) -> str:
    """JSON the way FastAPI's JSONResponse writes it, so a replay matches the original."""
    return json.dumps(
        jsonable_encoder(body), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def _canonical_body(body: bytes) -> bytes:
    # Key order and whitespace are not a different request.
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_fingerprint(*, method: str, path: str, body: bytes, principal: str | None) -> str:
    """What makes two requests "the same request" for one key."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), (principal or "").encode()):
        digest.update(len(part).to_bytes(4, "big") + part)
    digest.update(hashlib.sha256(_canonical_body(body)).digest())
    return digest.hexdigest()


async def fingerprint_request(request: Request, principal: str | None) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + "&".join(sorted(request.url.query.split("&")))
    return request_fingerprint(
        method=request.method, path=path, body=await request.body(), principal=principal
    )


def validate_idempotency_key(value: str) -> str:
    """1 to 255 visible ASCII characters; anything else is a 400."""
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in value):
        raise Problem(
            type_=INVALID_IDEMPOTENCY_KEY,
            detail=f"{IDEMPOTENCY_KEY_HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII "
            "characters (a UUID is a good choice)",
        )
    return value


async def idempotency_key(
    value: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            description="Retrying a write with the same key and body gives the first answer.",
        ),
    ] = None,
) -> str | None:
    return None if value is None else validate_idempotency_key(value)


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


def _lock_key(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)


class IdempotencyStore:
    """Claims and answers in the service's ``idempotency_keys`` table."""

    def __init__(self, *, ttl: timedelta = timedelta(hours=24)) -> None:
        self.ttl = ttl

    async def claim(self, conn: Connection, key: str, fingerprint: str) -> StoredResponse | None:
        """The stored answer for ``key``, or None after claiming it for this transaction.

        Raises a 409 problem while another transaction holds the key and a 422
        problem when the key was used for a different request.
        """
        if not conn.is_in_transaction():
            raise RuntimeError("claim the key inside the command's transaction")
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, $2)", _LOCK_CLASS, _lock_key(key)
        )
        if not locked:
            raise _in_use()
        row = await conn.fetchrow(
            "SELECT fingerprint, status_code, headers::text AS headers, response_body, "
            "expires_at <= now() AS expired FROM idempotency_keys WHERE key = $1",
            key,
        )
        if row is not None and row["expired"]:
            await conn.execute("DELETE FROM idempotency_keys WHERE key = $1", key)
            row = None
        if row is not None:
            if row["fingerprint"] != fingerprint:
                raise Problem(
                    type_=IDEMPOTENCY_KEY_REUSED,
                    detail=f"this {IDEMPOTENCY_KEY_HEADER} was already used with another "
                    "request; use a new key for a new request",
                )
            if row["status_code"] is None:
                # Claimed earlier in this same transaction and not answered yet.
                raise _in_use()
            return StoredResponse(
                status_code=row["status_code"], body=row["response_body"],
                headers=json.loads(row["headers"]),
            )
        inserted = await conn.fetchval(
            "INSERT INTO idempotency_keys (key, fingerprint, expires_at) "
            "VALUES ($1, $2, now() + $3::interval) ON CONFLICT (key) DO NOTHING RETURNING 1",
            key, fingerprint, self.ttl,
        )
        if inserted is None:
            # Committed after this transaction's snapshot (REPEATABLE READ): retry later.
            raise _in_use()
        return None

    async def remember(
        self,
        conn: Connection,
        key: str,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> StoredResponse:
        """Store the answer; commits with the command, or not at all."""
        answer = StoredResponse(
            status_code=status,
            body=body if isinstance(body, str) else encode_body(body),
            headers={name.lower(): value for name, value in (headers or {}).items()},
        )
        updated = await conn.fetchval(
            "UPDATE idempotency_keys SET status_code = $2, response_body = $3, "
            "headers = $4::jsonb WHERE key = $1 AND status_code IS NULL RETURNING 1",
            key, answer.status_code, answer.body, json.dumps(dict(answer.headers)),
        )
        if updated is None:
            raise RuntimeError(f"remember() without claim() for idempotency key {key!r}")
        return answer

    async def purge_expired(self, conn: Connection | asyncpg.Pool[Any]) -> int:
        """Delete expired keys; returns how many. Claims ignore expired rows anyway."""
        status = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")
        return int(status.rsplit(" ", 1)[-1])


def _in_use() -> Problem:
    return Problem(
        type_=IDEMPOTENCY_KEY_IN_USE,
        detail=f"a request with this {IDEMPOTENCY_KEY_HEADER} is still in progress; "
        "retry after it finishes",
        headers={"Retry-After": "1"},
    )


async def get_idempotency_store(request: Request) -> IdempotencyStore:
    """The app's store, put on ``app.state`` by the app factory (``async``: no worker thread)."""
    store = getattr(request.app.state, "idempotency", None)
    if not isinstance(store, IdempotencyStore):
        raise RuntimeError("the app was not built by create_service_app")
    return store


Idempotency = Annotated[IdempotencyStore, Depends(get_idempotency_store)]
