"""Service clients: other Guestlist services that fetch personal-data keys.

Each is configured in ``IDENTITY_SECRET``'s neighbour ``SERVICE_CLIENTS``
(``audit=<secret>,projections=<secret>``). ``POST /v1/service-tokens`` with a
client's name and secret answers a short-lived access token whose ``sub`` is
the client's fixed UUID and whose only permission is ``read_personal_data_keys``;
no person's role carries that permission. Each key read with it is recorded
as ``PersonalDataViewed`` on ``identity.access``.

One client, ``notifications``, is the audience of the delivery keys: it alone
may open the tokens and addresses identity's events carry for the mails it sends.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventkit.http.problems import Problem
from eventkit.postgres_store import PostgresTransaction
from services.identity.commands import ServiceTokenRequest
from services.identity.handlers import UnitOfWork, service_subject
from services.identity.personal_data_keys import DeliveryKey
from services.identity.problems import INVALID_CREDENTIALS
from services.identity.settings import IdentitySettings
from services.identity.signing_keys import TokenMinter


class ServiceClients:
    def __init__(
        self, settings: IdentitySettings, minter: TokenMinter, clock: Callable[[], datetime]
    ) -> None:
        self._secrets = {name: s.get_secret_value() for name, s in settings.service_clients.items()}
        self._minter = minter
        self._ttl = settings.service_token_ttl
        self._clock = clock

    async def token(self, request: ServiceTokenRequest) -> dict[str, Any]:
        expected = self._secrets.get(request.client_id, "")
        given = request.client_secret.get_secret_value()
        # Compared even for unknown clients, so timing tells nothing.
        if not hmac.compare_digest(expected.encode(), given.encode()) or not expected:
            raise Problem(type_=INVALID_CREDENTIALS, detail="unknown client or wrong secret")
        now = self._clock()
        subject = service_subject(request.client_id)
        access = await self._minter.mint(
            subject=str(subject), session_id=f"service-{request.client_id}",
            permissions=frozenset({"read_personal_data_keys"}), now=now, ttl=self._ttl,
        )
        return {"access_token": access.token, "token_type": "Bearer",
                "expires_in": int(self._ttl.total_seconds()), "client_id": request.client_id}


class OwnKeyReaderToken:
    """Identity's own token for the keys other services own (an invitee's address is sealed
    under its invitation's key, kept by invitations).

    Identity is the issuer, so it signs this token itself, like a service client's:
    subject ``service_subject("identity")``, only ``read_personal_data_keys``; a new one
    once half of ``ttl`` has passed.
    """

    def __init__(
        self, minter: TokenMinter, clock: Callable[[], datetime], *,
        ttl: timedelta = timedelta(minutes=5),
    ) -> None:
        self._minter = minter
        self._clock = clock
        self._ttl = ttl
        self._token: str | None = None
        self._renew_at: datetime | None = None

    async def token(self) -> str:
        now = self._clock()
        if self._token is None or self._renew_at is None or now >= self._renew_at:
            access = await self._minter.mint(
                subject=str(service_subject(IDENTITY_CLIENT)),
                session_id=f"service-{IDENTITY_CLIENT}",
                permissions=frozenset({"read_personal_data_keys"}), now=now, ttl=self._ttl,
            )
            self._token, self._renew_at = access.token, now + self._ttl / 2
        return self._token


# Identity's own name as a reader of keys.
IDENTITY_CLIENT = "identity"
# The service client that sends identity's mails; delivery keys are for it alone.
MAILER_CLIENT = "notifications"


async def delivery_key(
    work: UnitOfWork, tx: PostgresTransaction, *, user_id: UUID, purpose: str,
    expires_at: datetime,
) -> DeliveryKey:
    """A fresh key for one message to ``user_id``, readable by the mailer until ``expires_at``."""
    return await work.data_keys.create_delivery(
        tx.connection, user_id=user_id, purpose=purpose, audience=MAILER_CLIENT,
        audience_id=service_subject(MAILER_CLIENT), expires_at=expires_at,
    )
