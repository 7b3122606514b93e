"""Identity's aggregate: a user's account, rebuilt from its events, and its decisions.

Pure: no I/O and no clock of its own. A :class:`User` is rebuilt from its
events (each with the time it was recorded) and each decision returns the
events it produces, or raises a :class:`DomainError` naming the rule broken.
Personal fields are never needed to decide: they may already be ciphertext.
The rules it applies live beside it: ``account_status`` (the states and their
moves, the errors), ``role_rules`` (who may grant what) and ``policies``
(lockout, reset mails).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from eventkit.registry import EventData
from schemas.identity import (
    LoginFailed,
    LoginFailure,
    LoginSucceeded,
    PasswordResetRequested,
    RevocationCause,
    RoleGranted,
    RoleRevoked,
    SessionsRevoked,
    UserDeleted,
    UserDeletionRequested,
    UserEmailConfirmed,
    UserLockedOut,
    UserReactivated,
    UserRegistered,
    UserSuspended,
)
from schemas.permissions import Permission, permissions_of
from schemas.roles import RoleAssignment
from services.identity.account_status import (
    TRANSITIONS,
    DomainError,
    InvalidTransition,
    UnknownUser,
    UserStatus,
)
from services.identity.policies import LockoutPolicy, ResetMailPolicy
from services.identity.role_rules import Granter, check_grant


@dataclass
class User:
    """One account, as its events left it."""

    user_id: UUID
    status: UserStatus | None = None  # None: no such account yet
    version: int = 0
    roles: set[RoleAssignment] = field(default_factory=set)
    recent_failures: list[datetime] = field(default_factory=list)
    reset_mails: list[datetime] = field(default_factory=list)  # PasswordResetRequested times
    locked_until: datetime | None = None
    suspended_until: datetime | None = None
    delete_after: datetime | None = None
    # The latest cut-off before which every token of the user is refused (eventkit.revocations).
    sessions_revoked_before: datetime | None = None

    @classmethod
    def from_history(
        cls, user_id: UUID, history: Iterable[tuple[EventData, datetime]]
    ) -> User:
        user = cls(user_id)
        for event, at in history:
            user.apply(event, at)
        return user

    # -- evolving -------------------------------------------------------------

    def apply(self, event: EventData, at: datetime) -> None:
        self.version += 1
        self._note_revocation(event, at)
        match event:
            case UserRegistered():
                self.status = UserStatus.PENDING_CONFIRMATION
            case UserEmailConfirmed():
                self.status = UserStatus.ACTIVE
            case UserSuspended(until=until):
                self.status, self.suspended_until = UserStatus.SUSPENDED, until
            case UserReactivated():
                self.status, self.suspended_until = UserStatus.ACTIVE, None
            case UserDeleted():
                self.status, self.roles = UserStatus.DELETED, set()
            case UserDeletionRequested(delete_after=delete_after):
                self.delete_after = delete_after
            case RoleGranted():
                self.roles.add(_assignment(event))
            case RoleRevoked():
                self.roles.discard(_assignment(event))
            case LoginFailed(failure="wrong_password"):
                self.recent_failures.append(at)
            case UserLockedOut(until=until):
                self.locked_until, self.recent_failures = until, []
            case LoginSucceeded():
                self.recent_failures = []
            case PasswordResetRequested():
                self.reset_mails.append(at)
            case _:
                pass

    def _note_revocation(self, event: EventData, at: datetime) -> None:
        # The same cut-offs eventkit.revocations derives from these events in every service.
        cut_off = None
        if isinstance(event, SessionsRevoked) and event.session_id is None:
            cut_off = event.issued_before
        elif isinstance(event, UserSuspended | UserDeleted | RoleRevoked):
            cut_off = at
        if cut_off is not None and (
            self.sessions_revoked_before is None or cut_off > self.sessions_revoked_before
        ):
            self.sessions_revoked_before = cut_off

    # -- reading --------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions_of(r.role for r in self.roles)

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def sign_in_refusal(self, now: datetime) -> LoginFailure | None:
        """Why a correct password still does not open a session, or None."""
        match self.status:
            case UserStatus.DELETED | None:
                return "account_deleted"
            case UserStatus.PENDING_CONFIRMATION:
                return "email_unconfirmed"
            case UserStatus.SUSPENDED:
                return "account_suspended"
        return "account_locked" if self.is_locked(now) else None

    def may_mail_reset(self, now: datetime, policy: ResetMailPolicy) -> bool:
        """Whether a reset request now may produce a token and a mail: a live account that
        got fewer than ``policy.limit`` of them within the window."""
        if self.status in (UserStatus.DELETED, None):
            return False
        recent = [at for at in self.reset_mails if now - at < policy.window]
        return len(recent) < policy.limit

    # -- deciding -------------------------------------------------------------

    def _require(self) -> UserStatus:
        if self.status is None:
            raise UnknownUser(f"there is no account {self.user_id}")
        return self.status

    def _move(self, wanted: UserStatus) -> None:
        current = self._require()
        if wanted not in TRANSITIONS[current]:
            raise InvalidTransition(current, wanted)

    def _revoke_sessions(self, now: datetime, cause: RevocationCause) -> SessionsRevoked:
        return SessionsRevoked(user_id=self.user_id, issued_before=now, cause=cause)

    def confirm_email(self) -> list[EventData]:
        # Only a pending account confirms: a suspended one is reactivated by staff instead.
        if self._require() is not UserStatus.PENDING_CONFIRMATION:
            raise InvalidTransition(self._require(), UserStatus.ACTIVE)
        return [UserEmailConfirmed(user_id=self.user_id)]

    def suspend(
        self, *, reason: str, until: datetime | None, by: UUID | None, now: datetime
    ) -> list[EventData]:
        self._move(UserStatus.SUSPENDED)
        if until is not None and until <= now:
            raise DomainError("a suspension must end in the future", field="until")
        return [
            UserSuspended(user_id=self.user_id, reason=reason, until=until, suspended_by=by),
            self._revoke_sessions(now, "suspended"),
        ]

    def reactivate(self, *, by: UUID | None) -> list[EventData]:
        if self.status is not UserStatus.SUSPENDED:
            raise InvalidTransition(self._require(), UserStatus.ACTIVE)
        return [UserReactivated(user_id=self.user_id, reactivated_by=by)]

    def suspension_ran_out(self, now: datetime) -> bool:
        return (
            self.status is UserStatus.SUSPENDED
            and self.suspended_until is not None
            and self.suspended_until <= now
        )

    def request_deletion(self, *, by: UUID, now: datetime, grace: timedelta) -> list[EventData]:
        self._move(UserStatus.DELETED)
        return [
            UserDeletionRequested(user_id=self.user_id, requested_by=by, delete_after=now + grace)
        ]

    def delete(self, *, now: datetime, reason: str | None = None) -> list[EventData]:
        self._move(UserStatus.DELETED)
        return [
            self._revoke_sessions(now, "deleted"), UserDeleted(user_id=self.user_id, reason=reason)
        ]

    def grant_role(
        self,
        assignment: RoleAssignment,
        *,
        granter: Granter | None,
        via_invitation_id: UUID | None = None,
    ) -> list[EventData]:
        """``granter`` None: the system (default role, an invitation's roles, the first admin)."""
        if self._require() is UserStatus.DELETED:
            raise InvalidTransition(UserStatus.DELETED, UserStatus.DELETED)
        if granter is not None:
            check_grant(granter, assignment)
        if assignment in self.roles:
            return []
        return [
            RoleGranted(
                user_id=self.user_id, role=assignment.role, scope=assignment.scope,
                community_id=assignment.community_id,
                granted_by=granter.user_id if granter is not None else None,
                via_invitation_id=via_invitation_id,
                privilege_escalation=assignment.scope == "platform",
            )
        ]

    def revoke_role(
        self, assignment: RoleAssignment, *, revoker: Granter, now: datetime
    ) -> list[EventData]:
        self._require()
        check_grant(revoker, assignment)
        if assignment not in self.roles:
            raise DomainError(f"the account does not hold {assignment.role} there")
        return [
            RoleRevoked(
                user_id=self.user_id, role=assignment.role, scope=assignment.scope,
                community_id=assignment.community_id, revoked_by=revoker.user_id,
            ),
            self._revoke_sessions(now, "role_revoked"),
        ]

    def sign_in_failed(
        self, *, now: datetime, policy: LockoutPolicy, failure: LoginFailure = "wrong_password",
        client_address_hash: str | None = None,
    ) -> list[EventData]:
        """A failed attempt; the ``policy.threshold``-th wrong password in a window locks."""
        self._require()
        if failure != "wrong_password":
            return [
                LoginFailed(
                    user_id=self.user_id, failure=failure,
                    consecutive_failures=max(1, len(self.recent_failures)),
                    client_address_hash=client_address_hash,
                )
            ]
        failures = [at for at in self.recent_failures if now - at < policy.window]
        count = len(failures) + 1
        events: list[EventData] = [
            LoginFailed(
                user_id=self.user_id, failure=failure, consecutive_failures=count,
                client_address_hash=client_address_hash,
            )
        ]
        if count >= policy.threshold:
            events.append(
                UserLockedOut(
                    user_id=self.user_id, until=now + policy.duration, failed_attempts=count
                )
            )
        return events

    def signed_in(
        self, *, session_id: UUID, expires_at: datetime, now: datetime
    ) -> list[EventData]:
        refusal = self.sign_in_refusal(now)
        if refusal is not None:
            raise DomainError(f"sign-in refused: {refusal}")
        return [LoginSucceeded(user_id=self.user_id, session_id=session_id, expires_at=expires_at)]


def _assignment(event: RoleGranted | RoleRevoked) -> RoleAssignment:
    return RoleAssignment(role=event.role, scope=event.scope, community_id=event.community_id)
