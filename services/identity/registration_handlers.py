"""Registration and e-mail confirmation, and the first platform manager.

Identity sends no mail: the confirmation token rides on ``UserRegistered``,
sealed under a delivery key only the notifications service may fetch, until
it expires (``personal_data_keys``). Who may register, and with which roles,
is decided in ``registration`` (pure).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg

from eventkit.http.problems import Problem
from eventkit.postgres_store import PostgresTransaction
from schemas.roles import DEFAULT_COMMUNITY_ID, DEFAULT_COMMUNITY_ROLE, RoleAssignment
from services.identity.account_status import DomainError, UserStatus
from services.identity.commands import RegisterUser
from services.identity.handlers import UnitOfWork, Written, new_secret_token, token_hash
from services.identity.passwords import hash_password
from services.identity.platform_settings import PlatformSettingsHandlers
from services.identity.problems import EMAIL_TAKEN, INVALID_TOKEN
from services.identity.registration import KnownInvitation, admit, register
from services.identity.service_clients import delivery_key

DEFAULT_ROLE = RoleAssignment(
    role=DEFAULT_COMMUNITY_ROLE, scope="community", community_id=DEFAULT_COMMUNITY_ID
)


@dataclass(frozen=True, slots=True)
class Registered:
    user_id: UUID
    status: UserStatus
    written: Written


class RegistrationHandlers:
    def __init__(
        self, work: UnitOfWork, *, platform: PlatformSettingsHandlers,
        confirmation_ttl: timedelta,
    ) -> None:
        self.work = work
        self._platform = platform
        self._confirmation_ttl = confirmation_ttl

    async def register(self, command: RegisterUser) -> Registered:
        keys = self.work.keys
        email_hash = keys.email_hash(command.email)
        password_hash = await hash_password(command.password.get_secret_value())
        now = self.work.clock()
        user_id = uuid4()
        token = new_secret_token()
        async with self.work.transaction() as tx:
            settings, _ = await self._platform.current(tx)
            invitation = None
            if command.invitation_code is not None:
                invitation = await self._invitation(
                    tx, keys.invitation_code_hash(command.invitation_code)
                )
            admission = admit(
                requires_invitation=settings.requires_invitation,
                code_given=command.invitation_code is not None, invitation=invitation,
                email_hash=email_hash, now=now,
            )
            try:
                async with tx.connection.transaction():
                    await tx.connection.execute(
                        "INSERT INTO credentials (user_id, email_hash, password_hash) "
                        "VALUES ($1, $2, $3)", user_id, email_hash, password_hash,
                    )
            except asyncpg.UniqueViolationError:
                raise Problem(type_=EMAIL_TAKEN, detail="sign in, or reset your password",
                              field="email") from None
            key = await self.work.data_keys.create(tx.connection, user_id)
            via = admission.invitation.invitation_id if admission.invitation else None
            sealed_token = None
            if not admission.confirmed:
                confirmation = await delivery_key(
                    self.work, tx, user_id=user_id, purpose="confirm_email",
                    expires_at=now + self._confirmation_ttl,
                )
                sealed_token = confirmation.seal(token)
            events = register(
                user_id=user_id, email=command.email, name=command.name,
                locale=command.locale or settings.default_locale, via_invitation_id=via,
                invitation_roles=admission.roles, default_role=DEFAULT_ROLE,
                confirmed=admission.confirmed, confirmation_token=sealed_token,
            )
            written = await self.work.append(tx, user_id, 0, events, actor=user_id, key=key)
            if via is not None:
                # Used up here at once; the invitations service confirms it from UserRegistered.
                await tx.connection.execute(
                    "UPDATE invitations SET status = 'accepted' WHERE invitation_id = $1", via
                )
            if not admission.confirmed:
                await tx.connection.execute(
                    "INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at) "
                    "VALUES ($1, $2, 'confirm_email', $3)",
                    token_hash(token), user_id, now + self._confirmation_ttl,
                )
        status = UserStatus.ACTIVE if admission.confirmed else UserStatus.PENDING_CONFIRMATION
        return Registered(user_id, status, written)

    async def _invitation(self, tx: PostgresTransaction, code_hash: str) -> KnownInvitation | None:
        row = await tx.connection.fetchrow(
            "SELECT invitation_id, status, valid_from, valid_until, invitee_email_hash, "
            "roles::text AS roles FROM invitations WHERE code_hash = $1", code_hash,
        )
        if row is None:
            return None
        return KnownInvitation(
            invitation_id=row["invitation_id"], status=row["status"],
            valid_from=row["valid_from"], valid_until=row["valid_until"],
            invitee_email_hash=row["invitee_email_hash"],
            roles=tuple(RoleAssignment.model_validate(r) for r in json.loads(row["roles"])),
        )

    async def confirm(self, token: str) -> tuple[UUID, Written]:
        async with self.work.transaction() as tx:
            user_id = await tx.connection.fetchval(
                "UPDATE one_time_tokens SET used_at = now() WHERE token_hash = $1 "
                "AND purpose = 'confirm_email' AND used_at IS NULL AND expires_at > now() "
                "RETURNING user_id", token_hash(token),
            )
            if user_id is None:
                raise Problem(type_=INVALID_TOKEN, field="token",
                              detail="ask for a new confirmation e-mail")
            user = await self.work.load_user(tx, user_id)
            written = await self.work.append_to_user(tx, user, user.confirm_email(), actor=user_id)
        return user_id, written

    async def create_admin(self, *, email: str, password: str, force: bool) -> UUID:
        """The first platform manager (``guestlist admin create``): refused while one
        exists, unless ``force``."""
        async with self.work.transaction() as tx:
            exists = await tx.connection.fetchval(
                "SELECT count(*) > 0 FROM events WHERE type = 'guestlist.identity.RoleGranted.v1' "
                "AND data->>'role' = 'platform_manager'"
            )
        if exists and not force:
            raise DomainError("a platform manager exists already (use --force to add another)")
        platform_role = RoleAssignment(role="platform_manager", scope="platform")
        password_hash = await hash_password(password)
        user_id = uuid4()
        keys = self.work.keys
        async with self.work.transaction() as tx:
            try:
                async with tx.connection.transaction():
                    await tx.connection.execute(
                        "INSERT INTO credentials (user_id, email_hash, password_hash) "
                        "VALUES ($1, $2, $3)", user_id, keys.email_hash(email), password_hash,
                    )
            except asyncpg.UniqueViolationError:
                raise DomainError("an account with this e-mail exists") from None
            key = await self.work.data_keys.create(tx.connection, user_id)
            events = register(
                user_id=user_id, email=email, name=None, locale="en", via_invitation_id=None,
                invitation_roles=(platform_role,), default_role=DEFAULT_ROLE, confirmed=True,
            )
            await self.work.append(tx, user_id, 0, events, actor=None, key=key)
        return user_id
