"""Values sealed by different key owners open through one reader, each with its owner's key."""

from __future__ import annotations

import base64
import json
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr

from eventkit.personal_data import (
    KeyOwners,
    KeyUnavailable,
    encrypt_value,
    key_owners,
    new_data_key,
    owner_of_source,
)
from services.notifications.settings import NotificationsSettings


class Token:
    async def token(self) -> str:
        return "service-token"


def owner_endpoint(keys: dict[str, bytes], asked: list[str]) -> httpx.MockTransport:
    """A key owner's ``GET /v1/internal/personal-data-keys/{id}``: 200 with the key, or 404."""

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.host}:{request.url.path.rsplit('/', 1)[-1]}")
        subject = request.url.path.rsplit("/", 1)[-1]
        key = keys.get(f"{request.url.host}:{subject}")
        if key is None:
            return httpx.Response(404, json={"title": "Not Found"})
        return httpx.Response(200, json={"subject_id": subject,
                                         "key": base64.urlsafe_b64encode(key).decode()})

    return httpx.MockTransport(answer)


def owners(client: httpx.AsyncClient) -> KeyOwners:
    return key_owners({"identity": "http://identity", "invitations": "http://invitations"},
                      client=client, credentials=Token(), purpose="audit_timeline")


async def test_a_value_opens_with_its_owners_key_whichever_owner_holds_it() -> None:
    person, invitation = str(uuid4()), str(uuid4())
    keys = {f"identity:{person}": new_data_key(), f"invitations:{invitation}": new_data_key()}
    asked: list[str] = []
    async with httpx.AsyncClient(transport=owner_endpoint(keys, asked)) as client:
        reader = owners(client)
        email = encrypt_value("ada@example.org", subject_id=person,
                              key=keys[f"identity:{person}"])
        invitee = encrypt_value("camille@example.org", subject_id=invitation,
                                key=keys[f"invitations:{invitation}"])

        assert await reader.reveal(email) == "ada@example.org"
        assert await reader.reveal(invitee) == "camille@example.org"
        assert await reader.reveal(invitee, owner="invitations") == "camille@example.org"
        assert await reader.reveal(invitee) == "camille@example.org"

    # identity's "no such key" was cached: the second reading asked nobody again
    assert asked == [f"identity:{person}", f"identity:{invitation}",
                     f"invitations:{invitation}"]


async def test_a_value_reads_erased_only_when_no_owner_has_its_key() -> None:
    asked: list[str] = []
    async with httpx.AsyncClient(transport=owner_endpoint({}, asked)) as client:
        value = encrypt_value("x@example.org", subject_id=str(uuid4()), key=new_data_key())

        assert await owners(client).reveal(value) is None
    assert [host.split(":")[0] for host in asked] == ["identity", "invitations"]


async def test_an_owner_that_cannot_answer_is_not_taken_for_an_erasure() -> None:
    invitation = str(uuid4())
    key = new_data_key()

    def down_or_known(request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity":
            raise httpx.ConnectError("identity is down", request=request)
        if request.url.path.endswith(invitation):
            return httpx.Response(200, json={"key": base64.urlsafe_b64encode(key).decode()})
        return httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down_or_known)) as client:
        reader = owners(client)
        invitee = encrypt_value("camille@example.org", subject_id=invitation, key=key)
        unknown = encrypt_value("x@example.org", subject_id=str(uuid4()), key=new_data_key())

        assert await reader.reveal(invitee) == "camille@example.org"
        with pytest.raises(KeyUnavailable):
            await reader.reveal(unknown)


async def test_an_owners_event_is_opened_by_that_owner_alone_and_others_by_all() -> None:
    async with httpx.AsyncClient(transport=owner_endpoint({}, [])) as client:
        reader = owners(client)

        assert reader.of_source("/guestlist/invitations") is reader.of("invitations")
        assert reader.of_source("/guestlist/notifications") is reader
        assert reader.of_source("/elsewhere/identity") is reader
        assert owner_of_source("/guestlist/identity") == "identity"
        with pytest.raises(LookupError, match="'audit'"):
            reader.of("audit")


def owner_settings(secret: str | None = None) -> NotificationsSettings:
    return NotificationsSettings(
        database_url=SecretStr("postgresql://guestlist@127.0.0.1:5432/guestlist_notifications"),
        identity_url="http://identity", invitations_url="http://invitations",
        service_client_secret=None if secret is None else SecretStr(secret),
    )


async def test_a_readers_settings_name_its_owners_its_client_and_its_purpose() -> None:
    subject, key = str(uuid4()), new_data_key()
    requests: list[tuple[str, str, str | None]] = []

    def owners_and_tokens(request: httpx.Request) -> httpx.Response:
        requests.append((request.url.host, request.url.path, request.headers.get("X-Purpose")))
        if request.url.path == "/v1/service-tokens":
            assert json.loads(request.content) == {"client_id": "notifications",
                                                   "client_secret": "client-secret"}
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if request.url.host == "invitations" and request.url.path.endswith(subject):
            return httpx.Response(200, json={"key": base64.urlsafe_b64encode(key).decode()})
        return httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(owners_and_tokens)) as client:
        reader = KeyOwners.from_settings(owner_settings("client-secret"),
                                         client=client, purpose="notification_delivery")
        value = encrypt_value("camille@example.org", subject_id=subject, key=key)

        assert await reader.reveal(value) == "camille@example.org"
    keys_path = f"/v1/internal/personal-data-keys/{subject}"
    assert requests == [("identity", "/v1/service-tokens", None),
                        ("identity", keys_path, "notification_delivery"),
                        ("invitations", keys_path, "notification_delivery")]


async def test_a_reader_without_a_client_secret_opens_nothing_and_asks_no_owner() -> None:
    asked: list[str] = []
    async with httpx.AsyncClient(transport=owner_endpoint({}, asked)) as client:
        reader = KeyOwners.from_settings(owner_settings(), client=client, purpose="p")
        value = encrypt_value("x@example.org", subject_id=str(uuid4()), key=new_data_key())

        with pytest.raises(KeyUnavailable, match="no service client secret for 'notifications'"):
            await reader.reveal(value)
    assert asked == []
