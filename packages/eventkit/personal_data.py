"""Personal data in events, encrypted per person so that erasure is deleting one key.

The owning service (identity, for people with an account) keeps one AES-256-GCM
data key per person. Before an event is appended, every field its class marks
as personal (``eventkit.registry.personal_fields``) is replaced by ciphertext
in this format::

    pd1:<subject id>:<base64url(12-byte nonce || AES-GCM ciphertext and tag)>

The subject id travels in clear so any reader knows which key opens it; it is
also the associated data, so a value cannot be moved to another person's
event and still decrypt. Readers (audit, projections, notifications) ask a
:class:`KeyResolver` for the key; once the owner has erased it the resolver
answers None and the value reads as :data:`ERASED`. Nothing else changes, so
an audit chain over the ciphertext still verifies after erasure.

:class:`HttpKeyResolver` fetches keys from identity's internal endpoint
``GET /v1/internal/personal-data-keys/{subject_id}`` with a service token
(:class:`ServiceCredentials`, from ``POST /v1/service-tokens``) and caches
answers briefly: an erased key stops working everywhere within
``cache_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventkit.registry import EventData, personal_fields

PREFIX = "pd1:"
ERASED = "[erased]"
KEY_BYTES = 32
_NONCE_BYTES = 12

EventT = TypeVar("EventT", bound=EventData)


class PersonalDataError(Exception):
    """A value claims to be ciphertext but is not, or does not open with its key."""


class KeyUnavailable(Exception):
    """The key service cannot answer right now (not the same as an erased key)."""


class KeyResolver(Protocol):
    async def key_for(self, subject_id: str) -> bytes | None:
        """The person's data key, or None once it was erased (or never existed)."""
        ...


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def subject_of(value: str) -> str:
    """The subject whose key opens ``value``."""
    if not is_encrypted(value):
        raise PersonalDataError("not personal-data ciphertext")
    subject, separator, _ = value[len(PREFIX) :].partition(":")
    if not separator or not subject:
        raise PersonalDataError("ciphertext without a subject")
    return subject


def encrypt_value(value: str, *, subject_id: str, key: bytes) -> str:
    if ":" in subject_id:
        raise ValueError("a subject id cannot contain ':'")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, value.encode(), subject_id.encode())
    body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
    return f"{PREFIX}{subject_id}:{body}"


def decrypt_value(value: str, *, key: bytes) -> str:
    subject = subject_of(value)
    body = value[len(PREFIX) + len(subject) + 1 :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], subject.encode())
    except (binascii.Error, ValueError, InvalidTag) as error:
        raise PersonalDataError(f"ciphertext of {subject} does not open with its key") from error
    return plain.decode()


def encrypt_event(event: EventT, *, subject_id: str, key: bytes) -> EventT:
    """A copy of ``event`` with each personal field (that holds a value) encrypted."""
    updates: dict[str, Any] = {}
    for name in personal_fields(type(event)):
        value = getattr(event, name)
        if isinstance(value, str) and not is_encrypted(value):
            updates[name] = encrypt_value(value, subject_id=subject_id, key=key)
    # model_copy skips validation: the bounds of personal fields leave room for ciphertext.
    return event.model_copy(update=updates) if updates else event


async def decrypt_data(
    event_class: type[EventData], data: Mapping[str, Any], resolver: KeyResolver
) -> dict[str, Any]:
    """``data`` of ``event_class`` with personal fields in clear, or ERASED without a key."""
    opened = dict(data)
    for name in personal_fields(event_class):
        value = opened.get(name)
        if not is_encrypted(value):
            continue
        assert isinstance(value, str)
        key = await resolver.key_for(subject_of(value))
        opened[name] = ERASED if key is None else decrypt_value(value, key=key)
    return opened


async def decrypt_event(event: EventT, resolver: KeyResolver) -> EventT:
    opened = await decrypt_data(type(event), event.model_dump(), resolver)
    return event.model_copy(update=opened)


class TokenSource(Protocol):
    async def token(self) -> str: ...


class ServiceCredentials:
    """A service client's access token from identity, renewed shortly before it expires.

    Identity knows each client by ``IDENTITY_SERVICE_CLIENTS`` (name=secret);
    the token carries only ``read_personal_data_keys``.
    """

    def __init__(
        self, token_url: str, *, client_id: str, client_secret: str, client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._client = client
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                response = await self._client.post(
                    self._url, json={"client_id": self._client_id, "client_secret": self._secret}
                )
                if response.status_code != 200:
                    raise KeyUnavailable(
                        f"identity refused the service token ({response.status_code})"
                    )
                body = response.json()
                self._token = str(body["access_token"])
                self._renew_at = self._clock() + max(1.0, float(body["expires_in"]) - 30.0)
            return self._token


class HttpKeyResolver:
    """Keys from identity over HTTP, each answer (an erasure too) cached ``cache_seconds``."""

    def __init__(
        self, base_url: str, *, client: httpx.AsyncClient, credentials: TokenSource,
        purpose: str, cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client
        self._credentials = credentials
        self._purpose = purpose
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[bytes | None, float]] = {}

    async def key_for(self, subject_id: str) -> bytes | None:
        cached = self._cache.get(subject_id)
        if cached is not None and self._clock() - cached[1] < self._cache_seconds:
            return cached[0]
        token = await self._credentials.token()
        try:
            response = await self._client.get(
                f"{self._base_url}/v1/internal/personal-data-keys/{subject_id}",
                headers={"Authorization": f"Bearer {token}", "X-Purpose": self._purpose},
            )
        except httpx.HTTPError as error:
            raise KeyUnavailable(f"identity's key endpoint is unreachable: {error}") from error
        if response.status_code in (404, 410):
            key: bytes | None = None
        elif response.status_code == 200:
            key = base64.urlsafe_b64decode(response.json()["key"])
        else:
            raise KeyUnavailable(f"identity's key endpoint answered {response.status_code}")
        self._cache[subject_id] = (key, self._clock())
        return key


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()
