"""Crypto-shredding: personal fields are ciphertext; without the key they read [erased]."""

from __future__ import annotations

import base64
import json
from uuid import uuid4

import httpx
import pytest

from eventkit.personal_data import (
    ERASED,
    HttpKeyResolver,
    PersonalDataError,
    decrypt_event,
    decrypt_value,
    encrypt_event,
    encrypt_value,
    is_encrypted,
    new_data_key,
    subject_of,
)
from schemas.identity import UserRegistered


class Keys:
    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def key_for(self, subject_id: str) -> bytes | None:
        return self.keys.get(subject_id)


def test_personal_fields_are_encrypted_and_the_rest_is_not() -> None:
    user = uuid4()
    key = new_data_key()
    event = UserRegistered(user_id=user, email="ada@example.org", name="Ada", locale="en")
    sealed = encrypt_event(event, subject_id=str(user), key=key)
    assert is_encrypted(sealed.email) and is_encrypted(sealed.name)
    # Whole values only: base64 ciphertext may contain "ada" by chance.
    dumped = sealed.model_dump_json()
    assert "ada@example.org" not in dumped and '"Ada"' not in dumped
    assert sealed.user_id == user and sealed.locale == "en"
    assert subject_of(sealed.email) == str(user)
    # The sealed event still fits its contract (bounds leave room for ciphertext).
    UserRegistered.model_validate(sealed.model_dump())


async def test_with_the_key_a_reader_sees_the_values_and_after_erasure_it_sees_erased() -> None:
    user = str(uuid4())
    keys = Keys()
    keys.keys[user] = new_data_key()
    sealed = encrypt_event(
        UserRegistered(user_id=user, email="ada@example.org", locale="en"),
        subject_id=user, key=keys.keys[user],
    )
    assert (await decrypt_event(sealed, keys)).email == "ada@example.org"
    del keys.keys[user]
    assert (await decrypt_event(sealed, keys)).email == ERASED


def test_a_value_moved_to_another_person_does_not_open() -> None:
    key = new_data_key()
    sealed = encrypt_value("ada@example.org", subject_id="a", key=key)
    forged = sealed.replace("pd1:a:", "pd1:b:")
    with pytest.raises(PersonalDataError):
        decrypt_value(forged, key=key)
    with pytest.raises(PersonalDataError):
        decrypt_value(sealed, key=new_data_key())


class FixedToken:
    async def token(self) -> str:
        return "service-token"


async def test_the_http_resolver_caches_keys_and_erasures_briefly() -> None:
    key = new_data_key()
    calls: list[httpx.Request] = []
    erased = {"now": False}

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if erased["now"]:
            return httpx.Response(404, json={})
        return httpx.Response(200, json={"key": base64.urlsafe_b64encode(key).decode()})

    clock = {"t": 0.0}
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        resolver = HttpKeyResolver(
            "http://identity", client=client, credentials=FixedToken(), purpose="audit_log",
            cache_seconds=30, clock=lambda: clock["t"],
        )
        assert await resolver.key_for("s1") == key
        assert await resolver.key_for("s1") == key
        assert len(calls) == 1
        assert calls[0].headers["authorization"] == "Bearer service-token"
        assert calls[0].headers["x-purpose"] == "audit_log"
        assert calls[0].url.path == "/v1/internal/personal-data-keys/s1"
        erased["now"] = True
        clock["t"] = 31.0
        assert await resolver.key_for("s1") is None
    assert json.dumps({"n": len(calls)}) == '{"n": 2}'
