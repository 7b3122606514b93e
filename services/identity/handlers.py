"""Identity's command handlers: load the aggregate, decide, append, in one transaction.

Every event is sealed before it is appended: its personal fields are encrypted
with the subject's data key (``eventkit.personal_data``). Lookup rows
(credentials, sessions, one-time tokens, scheduled work) change in the same
transaction as the events, through ``tx.connection``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventkit.envelope import SYSTEM_ACTOR
from eventkit.http.auth import RevokedSessions
from eventkit.personal_data import encrypt_event
from eventkit.position import position_of
from eventkit.postgres_store import PostgresEventStore, PostgresTransaction
from eventkit.registry import EventData, EventRegistry
from eventkit.store import NewEvent, RecordedEvent
from schemas.access import IdentityPersonalDataViewed
from schemas.identity import SessionsRevoked
from services.identity.account_status import UnknownUser
from services.identity.derived_keys import DerivedKeys
from services.identity.domain import User
from services.identity.personal_data_keys import PersonalDataKeys

# The transaction of the command being served, when the route opened one (Idempotency-Key),
# and what the handlers asked to do once it commits.
_COMMAND_TX: ContextVar[PostgresTransaction | None] = ContextVar("identity_command_tx",
                                                                 default=None)
_AFTER_COMMIT: ContextVar[list[Callable[[], None]] | None] = ContextVar("identity_after_commit",
                                                                       default=None)

PLATFORM_ID = uuid.uuid5(uuid.NAMESPACE_URL, "https://guestlist.dev/platform")
SERVICE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://guestlist.dev/service-clients")


def service_subject(name: str) -> UUID:
    """A service client's user-like id, so access events can name it as the actor."""
    return uuid.uuid5(SERVICE_NAMESPACE, name)


def token_hash(token: str) -> str:
    # Random 256-bit tokens need no slow hash: a plain digest cannot be reversed.
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Written:
    """What a command answers with: the stream's new version and the last event's position."""

    stream_id: str
    version: int
    position: str | None

    @classmethod
    def of(cls, stream_id: str, recorded: Sequence[RecordedEvent], version: int) -> Written:
        if not recorded:
            return cls(stream_id, version, None)
        return cls(stream_id, recorded[-1].version, position_of(recorded[-1]))

    def body(self) -> dict[str, Any]:
        return {"version": self.version, "position": self.position}


class UnitOfWork:
    """Shared plumbing of identity's handlers: loading users and appending sealed events."""

    def __init__(
        self, *, store: Callable[[], PostgresEventStore], registry: EventRegistry,
        keys: DerivedKeys, data_keys: PersonalDataKeys, revoked: RevokedSessions,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self.registry = registry
        self.keys = keys
        self.data_keys = data_keys
        self.revoked = revoked
        self.clock = clock

    @property
    def store(self) -> PostgresEventStore:
        return self._store()

    @asynccontextmanager
    async def command(self) -> AsyncIterator[PostgresTransaction]:
        """One transaction for everything the handlers called inside do.

        A route opens it to commit an Idempotency-Key answer with the command's
        events; the handlers' own ``transaction()`` joins it, and their
        ``after_commit`` actions (mail, in-process revocations) wait for its commit.
        """
        pending: list[Callable[[], None]] = []
        async with self.store.transaction() as tx:
            tx_token, pending_token = _COMMAND_TX.set(tx), _AFTER_COMMIT.set(pending)
            try:
                yield tx
            finally:
                _COMMAND_TX.reset(tx_token)
                _AFTER_COMMIT.reset(pending_token)
        for action in pending:
            action()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """The command's transaction if a route opened one, else a new one."""
        current = _COMMAND_TX.get()
        if current is not None:
            yield current
            return
        async with self.store.transaction() as tx:
            yield tx

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the command's transaction committed (at once outside one)."""
        pending = _AFTER_COMMIT.get()
        if pending is None:
            action()
        else:
            pending.append(action)

    async def history(
        self, tx: PostgresTransaction, stream_id: str
    ) -> list[tuple[EventData, datetime]]:
        return [
            (self.registry.decode(event.envelope), event.envelope.time)
            for event in await tx.read_stream(stream_id)
        ]

    async def load_user(self, tx: PostgresTransaction, user_id: UUID) -> User:
        return User.from_history(user_id, await self.history(tx, str(user_id)))

    async def existing_user(self, tx: PostgresTransaction, user_id: UUID) -> User:
        """The account, or :class:`UnknownUser` (a 404) when there is none."""
        user = await self.load_user(tx, user_id)
        if not user.exists:
            raise UnknownUser(f"there is no account {user_id}")
        return user

    async def append(
        self, tx: PostgresTransaction, subject_id: UUID, expected_version: int | None,
        events: Sequence[EventData], *, actor: UUID | str | None, key: bytes | None = None,
        stream_id: str | None = None, seal: bool = True,
    ) -> Written:
        stream = stream_id or str(subject_id)
        if not events:
            return Written(stream, expected_version or 0, None)
        if key is None and seal:
            key = await self.data_keys.get(tx.connection, subject_id)
        new_events = []
        for event in events:
            if key is not None and seal:
                event = encrypt_event(event, subject_id=str(subject_id), key=key)
            new_events.append(
                NewEvent(type=event.event_type, topic=event.topic,
                         data_json=self.registry.encode(event))
            )
        recorded = await tx.append(
            stream, expected_version, new_events,
            actor_id=str(actor) if actor is not None else SYSTEM_ACTOR,
        )
        return Written.of(stream, recorded, expected_version or 0)

    async def append_to_user(
        self, tx: PostgresTransaction, user: User, events: Sequence[EventData],
        *, actor: UUID | str | None,
    ) -> Written:
        written = await self.append(tx, user.user_id, user.version, events, actor=actor)
        for event in events:
            user.apply(event, self.clock())
        return written

    async def viewed(
        self, tx: PostgresTransaction, *, actor: UUID | None, subject: UUID,
        fields: Sequence[str], endpoint: str, purpose: str,
    ) -> None:
        """Leave the trace every read of personal data must leave (``identity.access``)."""
        event = IdentityPersonalDataViewed(
            actor_id=actor, subject_id=subject, fields=tuple(fields), endpoint=endpoint,
            purpose=purpose,
        )
        # Reads of one person at the same moment take turns on her access stream (a log).
        await tx.append_to_log(
            f"access-{subject}",
            [NewEvent(type=event.event_type, topic=event.topic,
                      data_json=self.registry.encode(event))],
            actor_id=str(actor) if actor is not None else SYSTEM_ACTOR,
        )

    def apply_revocations(self, events: Sequence[EventData], at: datetime) -> None:
        """Refuse revoked tokens in this process at once; other services learn it from Kafka."""
        self.after_commit(lambda: self._revoke(events))

    def _revoke(self, events: Sequence[EventData]) -> None:
        for event in events:
            if isinstance(event, SessionsRevoked):
                if event.session_id is not None:
                    self.revoked.revoke_session(str(event.session_id))
                else:
                    self.revoked.revoke(str(event.user_id), event.issued_before)


async def schedule(
    tx: PostgresTransaction, user_id: UUID, kind: str, due_at: datetime | None
) -> None:
    if due_at is None:
        await tx.connection.execute(
            "DELETE FROM scheduled_work WHERE user_id = $1 AND kind = $2", user_id, kind
        )
        return
    await tx.connection.execute(
        "INSERT INTO scheduled_work (user_id, kind, due_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (user_id, kind) DO UPDATE SET due_at = excluded.due_at",
        user_id, kind, due_at,
    )
