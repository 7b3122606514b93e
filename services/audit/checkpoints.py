"""Signed checkpoints: an Ed25519 signature over (sequence, head hash, time), every N entries
and every T seconds while the log grows.

A checkpoint pins the chain: rewriting any entry up to its sequence changes
the head hash it signed. The private key never leaves this process and is
never logged; the public key is published at ``GET /v1/audit/checkpoints/key``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from eventkit.database import Connection
from eventkit.envelope import format_time
from eventkit.store import Clock, utc_now
from services.audit.domain import ChainedEntry, checkpoint_due, checkpoint_statement

log = structlog.get_logger(__name__)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """The service's Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def __repr__(self) -> str:  # never the key itself, whatever ends up logging this
        return f"CheckpointSigner(key_id={self.key_id!r})"

    @classmethod
    def from_file(cls, path: Path) -> CheckpointSigner:
        """Load the PEM key at ``path``; make one there (mode 0600) for local development."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
            signer = cls(_load(path))
            log.warning("generated a checkpoint signing key", path=str(path), key_id=signer.key_id)
            return signer
        return cls(_load(path))

    def sign(self, statement: bytes) -> bytes:
        return self._private_key.sign(statement)

    def public_key_base64(self) -> str:
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _load(path: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


@dataclass(frozen=True, slots=True)
class Checkpoint:
    sequence: int
    head_hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes

    @property
    def statement(self) -> bytes:
        return checkpoint_statement(sequence=self.sequence, head_hash=self.head_hash,
                                    signed_at=self.signed_at, key_id=self.key_id)

    def verifies_with(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.statement)
        except InvalidSignature:
            return False
        return True

    def as_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "head_hash": self.head_hash.hex(),
            "signed_at": format_time(self.signed_at),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "statement": self.statement.decode(),
        }


def _from_row(row: asyncpg.Record | Any) -> Checkpoint:
    return Checkpoint(row["sequence"], bytes(row["head_hash"]), row["signed_at"], row["key_id"],
                      bytes(row["signature"]))


_COLUMNS = "sequence, head_hash, signed_at, key_id, signature"


async def sign(
    connection: Connection, signer: CheckpointSigner, *, sequence: int, head_hash: bytes,
    at: datetime,
) -> Checkpoint:
    signed_at = at
    statement = checkpoint_statement(sequence=sequence, head_hash=head_hash, signed_at=signed_at,
                                     key_id=signer.key_id)
    checkpoint = Checkpoint(sequence, head_hash, signed_at, signer.key_id, signer.sign(statement))
    await connection.execute(
        f"INSERT INTO audit_checkpoints ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (sequence) DO NOTHING",
        checkpoint.sequence, checkpoint.head_hash, checkpoint.signed_at, checkpoint.key_id,
        checkpoint.signature,
    )
    return checkpoint


async def sign_due(
    connection: Connection, signer: CheckpointSigner, appended: Sequence[ChainedEntry], *,
    every: int, at: datetime,
) -> None:
    """Inside the append's transaction: sign each multiple of ``every`` the batch reached."""
    first = appended[0].entry.sequence
    for sequence in checkpoint_due(head=appended[-1].entry.sequence, last_signed=first - 1,
                                   every=every):
        entry = appended[sequence - first]
        await sign(connection, signer, sequence=sequence, head_hash=entry.hash, at=at)


async def latest(connection: Connection | asyncpg.Pool[Any]) -> Checkpoint | None:
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM audit_checkpoints ORDER BY sequence DESC LIMIT 1"
    )
    return _from_row(row) if row is not None else None


async def covering(connection: Connection | asyncpg.Pool[Any], sequence: int) -> Checkpoint | None:
    """The first checkpoint at or after ``sequence``."""
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM audit_checkpoints WHERE sequence >= $1 ORDER BY sequence LIMIT 1",
        sequence,
    )
    return _from_row(row) if row is not None else None


async def in_range(
    connection: Connection | asyncpg.Pool[Any], first: int, last: int
) -> list[Checkpoint]:
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM audit_checkpoints WHERE sequence BETWEEN $1 AND $2 "
        "ORDER BY sequence", first, last,
    )
    return [_from_row(row) for row in rows]


async def sign_head(
    pool: asyncpg.Pool[Any], signer: CheckpointSigner, *, clock: Clock = utc_now
) -> Checkpoint | None:
    """Sign the current head unless a checkpoint already covers it; the newest checkpoint."""
    async with pool.acquire() as connection, connection.transaction():
        head = await connection.fetchrow("SELECT sequence, hash FROM audit_chain_head")
        assert head is not None
        last = await latest(connection)
        if head["sequence"] == 0 or (last is not None and last.sequence >= head["sequence"]):
            return last
        return await sign(connection, signer, sequence=head["sequence"],
                          head_hash=bytes(head["hash"]), at=clock())


async def sign_periodically(
    pool: asyncpg.Pool[Any], signer: CheckpointSigner, *, interval: float,
    stopping: asyncio.Event,
) -> None:
    """Every ``interval`` seconds, sign the head if it moved; a failure waits for the next turn."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)
        try:
            await sign_head(pool, signer)
        except Exception as error:
            log.warning("checkpoint not signed; trying again later", error=repr(error))
