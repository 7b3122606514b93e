"""Accounts: registration, confirmation, staff actions on accounts and roles, platform settings.

Identity sends no mail. The confirmation token rides on ``UserRegistered`` and
the farewell address on ``UserDeleted``, each sealed under a delivery key only
the notifications service may fetch, until it expires (``personal_data_keys``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from eventkit.http.problems import Problem
from eventkit.personal_data import ERASED
from eventkit.postgres_store import PostgresTransaction
from eventkit.registry import EventData
from schemas.identity import (
    PlatformSettingsChanged,
    UserDataExported,
    UserDeleted,
    UserProfileUpdated,
)
from schemas.roles import DEFAULT_COMMUNITY_ID, DEFAULT_COMMUNITY_ROLE, RoleAssignment
from services.identity.commands import (
    DeleteUser,
    GrantRole,
    RegisterUser,
    SuspendUser,
    UpdateProfile,
)
from services.identity.domain import (
    DomainError,
    Granter,
    InvalidTransition,
    UnknownUser,
    User,
    UserStatus,
)
from services.identity.handlers import (
    PLATFORM_ID,
    UnitOfWork,
    Written,
    new_secret_token,
    schedule,
    token_hash,
)
from services.identity.passwords import hash_password
from services.identity.problems import EMAIL_TAKEN, INVALID_TOKEN
from services.identity.queries import profile
from services.identity.registration import KnownInvitation, admit, register
from services.identity.service_clients import delivery_key

DEFAULT_ROLE = RoleAssignment(
    role=DEFAULT_COMMUNITY_ROLE, scope="community", community_id=DEFAULT_COMMUNITY_ID
)
DEFAULT_SETTINGS = PlatformSettingsChanged(
    platform_id=PLATFORM_ID, name="Guestlist", requires_invitation=True, time_zone="UTC",
    default_locale="en", dormant_after_days=365,
)


@dataclass(frozen=True, slots=True)
class Registered:
    user_id: UUID
    status: UserStatus
    written: Written


class AccountHandlers:
    def __init__(
        self, work: UnitOfWork, *, confirmation_ttl: timedelta, deletion_grace: timedelta,
        deletion_notice_ttl: timedelta,
    ) -> None:
        self.work = work
        self._confirmation_ttl = confirmation_ttl
        self._deletion_grace = deletion_grace
        self._deletion_notice_ttl = deletion_notice_ttl

    # -- platform settings --------------------------------------------------

    async def platform_settings(
        self, tx: PostgresTransaction
    ) -> tuple[PlatformSettingsChanged, int]:
        history = await self.work.history(tx, str(PLATFORM_ID))
        current = DEFAULT_SETTINGS
        for event, _ in history:
            if isinstance(event, PlatformSettingsChanged):
                current = event
        return current, len(history)

    async def change_platform_settings(
        self, tx: PostgresTransaction, values: dict[str, Any], *, by: UUID
    ) -> tuple[PlatformSettingsChanged, Written]:
        _, version = await self.platform_settings(tx)
        event = PlatformSettingsChanged(platform_id=PLATFORM_ID, changed_by=by, **values)
        written = await self.work.append(tx, PLATFORM_ID, version, [event], actor=by, seal=False)
        return event, written

    # -- registration -------------------------------------------------------

    async def register(self, command: RegisterUser) -> Registered:
        keys = self.work.keys
        email_hash = keys.email_hash(command.email)
        password_hash = await hash_password(command.password.get_secret_value())
        now = self.work.clock()
        user_id = uuid4()
        token = new_secret_token()
        async with self.work.transaction() as tx:
            settings, _ = await self.platform_settings(tx)
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

    # -- staff actions on accounts -------------------------------------------

    async def _existing(self, tx: PostgresTransaction, user_id: UUID) -> User:
        user = await self.work.load_user(tx, user_id)
        if not user.exists:
            raise UnknownUser(f"there is no account {user_id}")
        return user

    async def suspend(self, user_id: UUID, command: SuspendUser, *, by: UUID) -> Written:
        now = self.work.clock()
        async with self.work.transaction() as tx:
            user = await self._existing(tx, user_id)
            events = user.suspend(reason=command.reason, until=command.until, by=by, now=now)
            written = await self.work.append_to_user(tx, user, events, actor=by)
            await schedule(tx, user_id, "reactivate", command.until)
            await self._end_sessions(tx, user_id)
        self.work.apply_revocations(events, now)
        return written

    async def reactivate(self, user_id: UUID, *, by: UUID | None) -> Written:
        async with self.work.transaction() as tx:
            user = await self._existing(tx, user_id)
            written = await self.work.append_to_user(tx, user, user.reactivate(by=by), actor=by)
            await schedule(tx, user_id, "reactivate", None)
        return written

    async def delete(
        self, user_id: UUID, command: DeleteUser | None, *, by: UUID | None
    ) -> Written:
        """Delete the account and erase its personal data by destroying its key."""
        now = self.work.clock()
        async with self.work.transaction() as tx:
            user = await self._existing(tx, user_id)
            events = user.delete(now=now, reason=command.reason if command else None)
            events = await self._erase(tx, user_id, events, now)
            written = await self.work.append_to_user(tx, user, events, actor=by)
        self.work.apply_revocations(events, now)
        return written

    async def _erase(
        self, tx: PostgresTransaction, user_id: UUID, events: list[EventData], now: datetime
    ) -> list[EventData]:
        """Destroy the data keys and every lookup row of a deleted account, in its transaction.

        Answers ``events`` with the address put on ``UserDeleted`` for the farewell,
        sealed under a fresh delivery key: the person's own key is gone with this.
        """
        address = (await profile(self.work, tx, user_id))["email"]
        await self.work.data_keys.destroy(tx.connection, user_id)
        for statement in (
            "DELETE FROM credentials WHERE user_id = $1",
            # A reset link mailed before must not set a password on a deleted account.
            "DELETE FROM one_time_tokens WHERE user_id = $1",
            "DELETE FROM scheduled_work WHERE user_id = $1",
        ):
            await tx.connection.execute(statement, user_id)
        await self._end_sessions(tx, user_id)
        if address == ERASED:
            return events
        notice = await delivery_key(self.work, tx, user_id=user_id, purpose="deletion_notice",
                                    expires_at=now + self._deletion_notice_ttl)
        return [event.model_copy(update={"email": notice.seal(address)})
                if isinstance(event, UserDeleted) else event for event in events]

    async def request_deletion(self, user_id: UUID) -> tuple[Written, datetime]:
        now = self.work.clock()
        async with self.work.transaction() as tx:
            user = await self._existing(tx, user_id)
            events = user.request_deletion(by=user_id, now=now, grace=self._deletion_grace)
            written = await self.work.append_to_user(tx, user, events, actor=user_id)
            assert user.delete_after is not None
            await schedule(tx, user_id, "delete", user.delete_after)
        return written, user.delete_after

    async def _end_sessions(self, tx: PostgresTransaction, user_id: UUID) -> None:
        await tx.connection.execute(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
        )

    # -- profile ------------------------------------------------------------

    async def update_profile(
        self, user_id: UUID, command: UpdateProfile, *, by: UUID
    ) -> Written:
        async with self.work.transaction() as tx:
            user = await self._existing(tx, user_id)
            if user.status is UserStatus.DELETED:
                raise InvalidTransition(UserStatus.DELETED, UserStatus.DELETED)
            current = await profile(self.work, tx, user_id)
            event = UserProfileUpdated(
                user_id=user_id,
                name=command.name if "name" in command.model_fields_set else current["name"],
                locale=command.locale or current["locale"],
            )
            return await self.work.append_to_user(tx, user, [event], actor=by)

    async def exported(self, tx: PostgresTransaction, user_id: UUID) -> Written:
        user = await self.work.load_user(tx, user_id)
        event = UserDataExported(user_id=user_id, export_id=uuid4(), requested_by=user_id)
        return await self.work.append_to_user(tx, user, [event], actor=user_id)

    # -- roles --------------------------------------------------------------

    async def grant(self, user_id: UUID, command: GrantRole, *, by: UUID) -> Written:
        assignment = RoleAssignment(role=command.role, scope=command.scope,
                                    community_id=command.community_id)
        async with self.work.transaction() as tx:
            granter = await self.work.load_user(tx, by)
            user = await self._existing(tx, user_id)
            events = user.grant_role(assignment, granter=Granter(by, frozenset(granter.roles)))
            return await self.work.append_to_user(tx, user, events, actor=by)

    async def revoke(self, user_id: UUID, assignment: RoleAssignment, *, by: UUID) -> Written:
        now = self.work.clock()
        async with self.work.transaction() as tx:
            revoker = await self.work.load_user(tx, by)
            user = await self._existing(tx, user_id)
            events = user.revoke_role(
                assignment, revoker=Granter(by, frozenset(revoker.roles)), now=now
            )
            written = await self.work.append_to_user(tx, user, events, actor=by)
        self.work.apply_revocations(events, now)
        return written

    # -- scheduled work (two replicas: SKIP LOCKED hands each row to one) ---------

    async def run_due_work(self) -> int:
        """Due reactivations and deletions; then delivery keys past their time are deleted."""
        done = 0
        while True:
            async with self.work.transaction() as tx:
                row = await tx.connection.fetchrow(
                    "SELECT user_id, kind FROM scheduled_work WHERE due_at <= $1 "
                    "ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED", self.work.clock(),
                )
                if row is None:
                    await self.work.data_keys.delete_expired(tx.connection, self.work.clock())
                    return done
                await tx.connection.execute(
                    "DELETE FROM scheduled_work WHERE user_id = $1 AND kind = $2",
                    row["user_id"], row["kind"],
                )
                await self._run(tx, row["user_id"], row["kind"])
            done += 1

    async def _run(self, tx: PostgresTransaction, user_id: UUID, kind: str) -> None:
        user = await self.work.load_user(tx, user_id)
        now = self.work.clock()
        try:
            if kind == "reactivate" and user.suspension_ran_out(now):
                await self.work.append_to_user(tx, user, user.reactivate(by=None), actor=None)
            elif kind == "delete" and user.status is not UserStatus.DELETED:
                events = user.delete(now=now, reason="deletion requested by the person")
                events = await self._erase(tx, user_id, events, now)
                await self.work.append_to_user(tx, user, events, actor=None)
                self.work.apply_revocations(events, now)
        except DomainError:
            pass  # The account moved on (reactivated by hand, deleted): nothing left to do.

    # -- the first platform manager --------------------------------------------

    async def create_admin(self, *, email: str, password: str, force: bool) -> UUID:
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
