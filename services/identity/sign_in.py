"""Sign-in: a password checked, a session opened, or a failure recorded with its lockout.

Answers never tell whether an e-mail has an account, by content or by time:
every wrong e-mail or password gets the same problem after the same argon2
work and one write (``LoginFailed`` for an account, a counter row for an
address without one). Only someone who knows the password learns the
account's state (unconfirmed, suspended, locked).
"""

from __future__ import annotations

from uuid import UUID, uuid4

from eventkit.http.problems import Problem
from schemas.identity import LoginFailure
from services.identity.handlers import UnitOfWork
from services.identity.passwords import verify_password
from services.identity.policies import LockoutPolicy
from services.identity.problems import ACCOUNT_UNAVAILABLE, INVALID_CREDENTIALS
from services.identity.sessions import Sessions, Tokens


def _bad_credentials() -> Problem:
    return Problem(type_=INVALID_CREDENTIALS, detail="check the e-mail and the password")


class SignIn:
    def __init__(self, work: UnitOfWork, *, sessions: Sessions, policy: LockoutPolicy) -> None:
        self.work = work
        self._sessions = sessions
        self._policy = policy

    async def sign_in(self, *, email: str, password: str, client_address: str | None) -> Tokens:
        email_hash = self.work.keys.email_hash(email)
        row = await self.work.store.pool.fetchrow(
            "SELECT user_id, password_hash FROM credentials WHERE email_hash = $1", email_hash
        )
        correct = await verify_password(row["password_hash"] if row else None, password)
        if row is None:
            await self._unknown_address_failed(email_hash)
            raise _bad_credentials()
        user_id: UUID = row["user_id"]
        address = (
            self.work.keys.client_address_hash(client_address) if client_address else None
        )
        now = self.work.clock()
        refusal: LoginFailure | None = None
        async with self.work.store.transaction() as tx:
            user = await self.work.load_user(tx, user_id)
            if not correct:
                locked = user.is_locked(now)
                failure: LoginFailure = "account_locked" if locked else "wrong_password"
                events = user.sign_in_failed(now=now, policy=self._policy, failure=failure,
                                             client_address_hash=address)
                await self.work.append_to_user(tx, user, events, actor=user_id)
            else:
                refusal = user.sign_in_refusal(now)
                if refusal is not None:
                    events = user.sign_in_failed(now=now, policy=self._policy, failure=refusal,
                                                 client_address_hash=address)
                    await self.work.append_to_user(tx, user, events, actor=user_id)
                else:
                    session_id = uuid4()
                    refresh = await self._sessions.open_session(tx, user_id, session_id, now)
                    events = user.signed_in(session_id=session_id,
                                            expires_at=now + self._sessions.refresh_ttl, now=now)
                    await self.work.append_to_user(tx, user, events, actor=user_id)
        # Failures are recorded (committed) before they are answered.
        if not correct:
            raise _bad_credentials()
        if refusal is not None:
            raise Problem(type_=ACCOUNT_UNAVAILABLE, detail=_REFUSALS[refusal], reason=refusal)
        access = await self._sessions.mint(user, session_id)
        return Tokens(access.token, access.expires_at, refresh, session_id, user_id)

    async def _unknown_address_failed(self, email_hash: str) -> None:
        """The one write a failure costs when the address has no account (a known one's is
        ``LoginFailed``), committed before the answer like that one."""
        async with self.work.store.transaction() as tx:
            await tx.connection.execute(
                "INSERT INTO unknown_sign_ins (email_hash, failures, last_failed_at) "
                "VALUES ($1, 1, $2) ON CONFLICT (email_hash) DO UPDATE "
                "SET failures = unknown_sign_ins.failures + 1, last_failed_at = $2",
                email_hash, self.work.clock(),
            )


_REFUSALS: dict[LoginFailure, str] = {
    "email_unconfirmed": "confirm your e-mail address first",
    "account_suspended": "the account is suspended",
    "account_locked": "too many failed attempts; try again later",
    "account_deleted": "the account was deleted",
    "wrong_password": "check the e-mail and the password",
}
