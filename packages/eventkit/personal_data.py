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

:class:`HttpKeyResolver` fetches keys from a key owner's internal endpoint
``GET /v1/internal/personal-data-keys/{subject_id}`` with a service token
(:class:`ServiceCredentials`, from identity's ``POST /v1/service-tokens``) and
caches answers briefly: an erased key stops working everywhere within
``cache_seconds``.

More than one service owns keys (identity those of people, invitations those
of invitees). :class:`KeyOwners` routes to each owner's resolver: by the
owning service when the reader knows it (the ``ce_source`` of the event the
value came in, :meth:`KeyOwners.of_source`), otherwise by asking the owners in
a fixed order; key ids are UUIDs, so two owners never hold the same one, and
each owner's "no such key" is cached like any answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from eventkit.registry import EventData, personal_fields
from eventkit.settings import KeyReaderSettings

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


class MissingCredentials:
    """A token source for a reader configured without a secret: every key read fails."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def token(self) -> str:
        raise KeyUnavailable(self._reason)


class HttpKeyResolver:
    """Keys from one owner over HTTP, each answer (an erasure too) cached ``cache_seconds``."""

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
            raise KeyUnavailable(f"{self._base_url}'s key endpoint is unreachable: {error}"
                                 ) from error
        if response.status_code in (404, 410):
            key: bytes | None = None
        elif response.status_code == 200:
            key = base64.urlsafe_b64decode(response.json()["key"])
        else:
            raise KeyUnavailable(
                f"{self._base_url}'s key endpoint answered {response.status_code}"
            )
        self._cache[subject_id] = (key, self._clock())
        return key


SOURCE_PREFIX = "/guestlist/"


def owner_of_source(source: str) -> str | None:
    """The service a ``ce_source`` (``/guestlist/<service>``) names, or None for another."""
    if not source.startswith(SOURCE_PREFIX):
        return None
    return source[len(SOURCE_PREFIX) :] or None


class KeyOwners:
    """The key owners a reader opens values of, each by its own resolver.

    As a :class:`KeyResolver` it asks the owners in the order given and
    answers the first key found: for values whose owner is not known. A
    value's key counts as erased only when every owner says so; an owner
    that cannot answer makes the whole answer :class:`KeyUnavailable` unless
    another owner has the key.
    """

    def __init__(self, resolvers: Mapping[str, KeyResolver]) -> None:
        if not resolvers:
            raise ValueError("name at least one key owner")
        self.resolvers: Mapping[str, KeyResolver] = MappingProxyType(dict(resolvers))

    def of(self, owner: str) -> KeyResolver:
        """The resolver of ``owner``; a LookupError for a service that owns no keys here."""
        try:
            return self.resolvers[owner]
        except KeyError:
            raise LookupError(f"no key resolver for the personal data of {owner!r}") from None

    def of_source(self, source: str) -> KeyResolver:
        """The keys for the values of an event from ``source`` (its ``ce_source``).

        A key owner seals its own events' values with its own keys, so an event of
        an owner is opened by that owner alone; one of any other service by all.
        """
        owner = owner_of_source(source)
        if owner is None or owner not in self.resolvers:
            return self
        return self.resolvers[owner]

    async def key_for(self, subject_id: str) -> bytes | None:
        unavailable: KeyUnavailable | None = None
        for resolver in self.resolvers.values():
            try:
                key = await resolver.key_for(subject_id)
            except KeyUnavailable as error:
                unavailable = unavailable or error
                continue
            if key is not None:
                return key
        if unavailable is not None:
            raise unavailable
        return None

    @classmethod
    def from_settings(
        cls, settings: KeyReaderSettings, *, client: httpx.AsyncClient, purpose: str
    ) -> KeyOwners:
        """Identity and invitations as a service's settings name them, for ``purpose``."""
        return owners_over_http(
            identity_url=settings.identity_url, invitations_url=settings.invitations_url,
            client_id=settings.service_client_id, secret=settings.service_client_secret,
            client=client, purpose=purpose, cache_seconds=settings.personal_data_cache_seconds,
        )

    async def reveal(self, value: str, *, owner: str | None = None) -> str | None:
        """``value`` in clear, None once its key was erased; ``owner`` if known."""
        if not is_encrypted(value):
            return value  # written before encryption was switched on
        resolver = self if owner is None else self.of(owner)
        key = await resolver.key_for(subject_of(value))
        return None if key is None else decrypt_value(value, key=key)


def key_owners(
    urls: Mapping[str, str], *, client: httpx.AsyncClient, credentials: TokenSource,
    purpose: str, cache_seconds: float = 30.0,
) -> KeyOwners:
    """One :class:`HttpKeyResolver` per owning service (name → base URL), in that order."""
    return KeyOwners({
        owner: HttpKeyResolver(url, client=client, credentials=credentials, purpose=purpose,
                               cache_seconds=cache_seconds)
        for owner, url in urls.items()
    })  # fmt: skip


def owners_over_http(
    *, identity_url: str, invitations_url: str, client_id: str, secret: SecretStr | None,
    client: httpx.AsyncClient, purpose: str, cache_seconds: float = 30.0,
) -> KeyOwners:
    """Identity (people) then invitations (invitees), read with the service client's token."""
    credentials = service_credentials(
        identity_url, client_id=client_id, client=client,
        secret=None if secret is None else secret.get_secret_value(),
    )
    return key_owners({"identity": identity_url, "invitations": invitations_url},
                      client=client, credentials=credentials, purpose=purpose,
                      cache_seconds=cache_seconds)


def service_credentials(
    identity_url: str, *, client_id: str, secret: str | None, client: httpx.AsyncClient,
) -> TokenSource:
    """The service client's token source, or one that fails every read without a secret."""
    if secret is None:
        return MissingCredentials(
            f"no service client secret for {client_id!r}: personal data cannot be opened"
        )
    return ServiceCredentials(f"{identity_url.rstrip('/')}/v1/service-tokens",
                              client_id=client_id, client_secret=secret, client=client)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()
