"""Feeding ``RevokedSessions`` from identity's events, in every service that verifies tokens.

Identity publishes on ``identity.user``: ``SessionsRevoked`` (tokens of a user,
or of one session, issued before a time), and ``UserSuspended``,
``UserDeleted`` and ``RoleRevoked``, each of which ends the user's sessions
from the time it was recorded. This module reads them by ``ce_type`` name
only, so eventkit stays free of the event catalog.

``ServiceRuntime`` runs this subscription in every service (none opts in or
out). Every replica must see every revocation, so each process joins a consumer
group of its own (``<service>.revocations.<random>``) and reads the topic from
the beginning at start-up: the in-memory set is rebuilt after a restart. A
revocation applied twice is the same revocation, so redelivery is harmless.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

from eventkit.consumer import ConsumerSettings
from eventkit.envelope import Envelope
from eventkit.http.auth import RevokedSessions
from eventkit.store import Transaction
from eventkit.subscription import Subscription

IDENTITY_USER_TOPIC = "identity.user"
_ENDS_ALL_SESSIONS = frozenset({"UserSuspended", "UserDeleted", "RoleRevoked"})


def apply_revocation(revoked: RevokedSessions, envelope: Envelope) -> bool:
    """Record what ``envelope`` revokes, if anything; True when it revoked something."""
    parts = envelope.type.split(".")
    if len(parts) != 4 or parts[1] != "identity":
        return False
    name = parts[2]
    if name == "SessionsRevoked":
        data = json.loads(envelope.data_json)
        session_id = data.get("session_id")
        if session_id:
            revoked.revoke_session(str(session_id))
        else:
            before = datetime.fromisoformat(str(data["issued_before"]).replace("Z", "+00:00"))
            revoked.revoke(str(data["user_id"]), before)
        return True
    if name in _ENDS_ALL_SESSIONS:
        revoked.revoke(envelope.subject, envelope.time)
        return True
    return False


def revocation_subscription(
    revoked: RevokedSessions, *, service: str, topic: str = IDENTITY_USER_TOPIC,
    settings: ConsumerSettings | None = None,
) -> Subscription:
    """A subscription for ``ServiceRuntime`` that keeps ``revoked`` current."""

    async def handle(envelope: Envelope, _tx: Transaction) -> None:
        apply_revocation(revoked, envelope)

    return Subscription(
        group=f"{service}.revocations.{uuid.uuid4().hex[:12]}",
        handler=handle,
        # A pattern, not a list: where identity's topic does not exist yet (a stack being
        # created, a test of another service) it is picked up when it appears, instead of
        # holding the consumer in its start.
        pattern=f"^{re.escape(topic)}$",
        # Short polls: a suspended person's token must stop working within a second.
        settings=settings or ConsumerSettings(poll_timeout=0.05, commit_interval=5.0),
    )
