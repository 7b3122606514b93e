"""Identity's copy of an invitation knows the invitee's address by its hash, opened with the
invitation's key from the invitations service; while that service is away the event fails
(the consumer retries it) instead of being kept without the address."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from eventkit.envelope import Envelope
from eventkit.personal_data import HttpKeyResolver, KeyUnavailable, encrypt_event, new_data_key
from schemas.catalog import build_registry
from schemas.invitations import InvitationCreated
from services.identity.consumers import InvitationCopy
from services.identity.derived_keys import DerivedKeys
from services.identity.settings import IdentitySettings

URL = "postgresql://guestlist@127.0.0.1:5432/guestlist_identity"
KEYS = DerivedKeys.from_settings(IdentitySettings(database_url=URL))


class Token:
    async def token(self) -> str:
        return "identity-service-token"


class Connection:
    """What asyncpg would be asked to write."""

    def __init__(self) -> None:
        self.writes: list[tuple[Any, ...]] = []

    async def execute(self, query: str, *args: Any) -> None:
        self.writes.append((query, *args))


class Transaction:
    def __init__(self) -> None:
        self.connection = Connection()


def invitation_for(address: str, key: bytes) -> Envelope:
    now = datetime.now(UTC)
    invitation_id = uuid4()
    event = encrypt_event(InvitationCreated(
        invitation_id=invitation_id, invitee_email=address, inviter_id=uuid4(), locale="en",
        valid_from=now, valid_until=now + timedelta(days=9), code_hash="c" * 64,
    ), subject_id=str(invitation_id), key=key)
    return Envelope(id=uuid4(), type=str(event.event_type), subject=str(invitation_id),
                    time=now, actor_id="system", sequence=1, data_json=event.model_dump_json(),
                    source="/guestlist/invitations")


def invitations_service(key: bytes | None, asked: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if key is None:
            return httpx.Response(503)
        return httpx.Response(200, json={"key": base64.urlsafe_b64encode(key).decode()})

    return httpx.MockTransport(answer)


async def copy(envelope: Envelope, key: bytes | None, asked: list[httpx.Request]
               ) -> Transaction:
    tx = Transaction()
    async with httpx.AsyncClient(transport=invitations_service(key, asked)) as client:
        resolver = HttpKeyResolver("http://invitations", client=client, credentials=Token(),
                                   purpose="invitation_registration")
        handler = InvitationCopy(registry=build_registry(), keys=KEYS, resolver=resolver)
        await handler(envelope, tx)  # type: ignore[arg-type]
    return tx


async def test_the_invitees_address_is_kept_as_identitys_hash_opened_with_the_invitations_key(
) -> None:
    key = new_data_key()
    envelope = invitation_for("Camille@Example.org", key)
    asked: list[httpx.Request] = []

    tx = await copy(envelope, key, asked)

    [(_, invitation_id, *_, email_hash, _roles)] = tx.connection.writes
    assert str(invitation_id) == envelope.subject
    assert email_hash == KEYS.email_hash("camille@example.org")
    assert asked[0].url.path == f"/v1/internal/personal-data-keys/{envelope.subject}"
    assert asked[0].headers["Authorization"] == "Bearer identity-service-token"


async def test_while_invitations_cannot_give_the_key_the_event_fails_and_nothing_is_kept(
) -> None:
    envelope = invitation_for("camille@example.org", new_data_key())

    with pytest.raises(KeyUnavailable):
        await copy(envelope, None, [])
