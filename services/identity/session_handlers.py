"""Sessions: sign-in with lockout, refresh rotation with reuse detection, sign-out, passwords.

Answers never tell whether an e-mail has an account, by content or by time:
every wrong e-mail or password gets the same problem after the same argon2
work and one write (``LoginFailed`` for an account, a counter row for an
address without one); a reset request is one insert for any address, and the
scheduler looks the address up afterwards. Only someone who knows the password
learns the account's state (unconfirmed, suspended, locked).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from eventkit.http.problems import Problem
from eventkit.postgres_store import PostgresTransaction
from eventkit.rate_limit import ClientWindowLimit
from schemas.identity import LoginFailure, PasswordChanged, PasswordResetRequested, SessionsRevoked
from services.identity.domain import User
from services.identity.handlers import UnitOfWork, new_secret_token, token_hash
from services.identity.passwords import hash_password, verify_password
from services.identity.policies import LockoutPolicy, ResetMailPolicy
from services.identity.problems import (
    ACCOUNT_UNAVAILABLE,
    INVALID_CREDENTIALS,
    INVALID_REFRESH_TOKEN,
    INVALID_TOKEN,
    WEAK_PASSWORD,
)
from services.identity.queries import profile
from services.identity.service_clients import delivery_key
from services.identity.signing_keys import AccessToken, TokenMinter


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    expires_at: datetime
    refresh_token: str
    session_id: UUID
    user_id: UUID

    def body(self, now: datetime) -> dict[str, object]:
        return {
            "access_token": self.access_token, "token_type": "Bearer",
            "expires_in": int((self.expires_at - now).total_seconds()),
            "refresh_token": self.refresh_token, "session_id": str(self.session_id),
            "user_id": str(self.user_id),
        }


def _bad_credentials() -> Problem:
    return Problem(type_=INVALID_CREDENTIALS, detail="check the e-mail and the password")


class SessionHandlers:
    def __init__(
        self, work: UnitOfWork, *, minter: TokenMinter, policy: LockoutPolicy,
        refresh_ttl: timedelta, reset_ttl: timedelta,
        reset_mails: ResetMailPolicy, reset_requests: ClientWindowLimit,
    ) -> None:
        self.work = work
        self.minter = minter
        self._policy = policy
        self._refresh_ttl = refresh_ttl
        self._reset_ttl = reset_ttl
        self._reset_mails = reset_mails
        self._reset_requests = reset_requests

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
                    refresh = await self._open_session(tx, user_id, session_id, now)
                    events = user.signed_in(session_id=session_id,
                                            expires_at=now + self._refresh_ttl, now=now)
                    await self.work.append_to_user(tx, user, events, actor=user_id)
        # Failures are recorded (committed) before they are answered.
        if not correct:
            raise _bad_credentials()
        if refusal is not None:
            raise Problem(type_=ACCOUNT_UNAVAILABLE, detail=_REFUSALS[refusal], reason=refusal)
        access = await self._mint(user, session_id)
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

    async def _mint(self, user: User, session_id: UUID) -> AccessToken:
        """An access token that verifiers will accept, even right after a revocation.

        ``iat`` has one-second precision and verifiers refuse a token from the
        revocation's own second, so a sign-in in that second waits for the next one.
        """
        now = self.work.clock()
        cut_off = user.sessions_revoked_before
        if cut_off is not None and math.floor(now.timestamp()) < cut_off.timestamp():
            wait = math.ceil(cut_off.timestamp()) - now.timestamp() + 0.001
            await asyncio.sleep(min(wait, 1.01))
            now = self.work.clock()
        return await self.minter.mint(
            subject=str(user.user_id), session_id=str(session_id),
            permissions=user.permissions, now=now,
        )

    async def _open_session(
        self, tx: PostgresTransaction, user_id: UUID, session_id: UUID, now: datetime
    ) -> str:
        await tx.connection.execute(
            "INSERT INTO sessions (session_id, user_id, expires_at) VALUES ($1, $2, $3)",
            session_id, user_id, now + self._refresh_ttl,
        )
        return await self._issue_refresh(tx, session_id)

    async def _issue_refresh(self, tx: PostgresTransaction, session_id: UUID) -> str:
        token = new_secret_token()
        await tx.connection.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
            token_hash(token), session_id,
        )
        return token

    async def refresh(self, refresh_token: str) -> Tokens:
        now = self.work.clock()
        reused = False
        async with self.work.store.transaction() as tx:
            row = await tx.connection.fetchrow(
                "SELECT r.session_id, r.replaced_at, s.user_id, s.revoked_at, s.expires_at "
                "FROM refresh_tokens r JOIN sessions s USING (session_id) "
                "WHERE r.token_hash = $1 FOR UPDATE OF r, s", token_hash(refresh_token),
            )
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
                raise Problem(type_=INVALID_REFRESH_TOKEN, detail="sign in again")
            session_id, user_id = row["session_id"], row["user_id"]
            if row["replaced_at"] is not None:
                # Someone holds an old token of this family: end the whole session.
                reused = True
                event = SessionsRevoked(user_id=user_id, issued_before=now,
                                        cause="refresh_token_reused", session_id=session_id)
                await self._revoke_session(tx, user_id, session_id, event)
            else:
                user = await self.work.load_user(tx, user_id)
                if user.sign_in_refusal(now) is not None:
                    raise Problem(type_=INVALID_REFRESH_TOKEN, detail="sign in again")
                await tx.connection.execute(
                    "UPDATE refresh_tokens SET replaced_at = now() WHERE token_hash = $1",
                    token_hash(refresh_token),
                )
                new_refresh = await self._issue_refresh(tx, session_id)
        if reused:
            self.work.apply_revocations([event], now)
            raise Problem(type_=INVALID_REFRESH_TOKEN,
                          detail="this refresh token was used before; the session was ended")
        access = await self._mint(user, session_id)
        return Tokens(access.token, access.expires_at, new_refresh, session_id, user_id)

    async def _revoke_session(
        self, tx: PostgresTransaction, user_id: UUID, session_id: UUID, event: SessionsRevoked
    ) -> None:
        await tx.connection.execute(
            "UPDATE sessions SET revoked_at = now() WHERE session_id = $1", session_id
        )
        user = await self.work.load_user(tx, user_id)
        await self.work.append_to_user(tx, user, [event], actor=user_id)

    async def sign_out(self, *, user_id: UUID, session_id: UUID) -> None:
        now = self.work.clock()
        event = SessionsRevoked(user_id=user_id, issued_before=now, cause="user_request",
                                session_id=session_id)
        async with self.work.store.transaction() as tx:
            await self._revoke_session(tx, user_id, session_id, event)
        self.work.apply_revocations([event], now)

    async def _set_password(
        self, tx: PostgresTransaction, user_id: UUID, new_password: str, *, via_reset: bool
    ) -> None:
        now = self.work.clock()
        await tx.connection.execute(
            "UPDATE credentials SET password_hash = $2, changed_at = now() WHERE user_id = $1",
            user_id, await hash_password(new_password),
        )
        user = await self.work.load_user(tx, user_id)
        events = [
            PasswordChanged(user_id=user_id, via_reset=via_reset),
            SessionsRevoked(user_id=user_id, issued_before=now, cause="password_changed"),
        ]
        await self.work.append_to_user(tx, user, events, actor=user_id)
        await tx.connection.execute(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
        )
        self.work.apply_revocations(events, now)

    def _refuse_email_as_password(self, email_hash: str | None, password: str) -> None:
        # Identity keeps only the e-mail's keyed hash; hashing the password the same way
        # tells whether the two are equal (case-insensitively, as addresses are).
        if email_hash is not None and self.work.keys.email_hash(password) == email_hash:
            raise Problem(type_=WEAK_PASSWORD, field="new_password",
                          detail="new_password must not be the e-mail address")

    async def change_password(self, user_id: UUID, current: str, new: str) -> None:
        row = await self.work.store.pool.fetchrow(
            "SELECT password_hash, email_hash FROM credentials WHERE user_id = $1", user_id
        )
        if not await verify_password(row["password_hash"] if row else None, current):
            raise Problem(type_=INVALID_CREDENTIALS, detail="the current password is wrong",
                          field="current_password")
        assert row is not None
        self._refuse_email_as_password(row["email_hash"], new)
        async with self.work.store.transaction() as tx:
            await self._set_password(tx, user_id, new, via_reset=False)

    async def request_reset(self, email: str, *, client_address: str | None) -> None:
        """One count for the client and one insert, whatever the address: the answer cannot
        tell known from unknown. A client past its window gets a 429, whatever it asked for.

        The scheduler takes the request up within a tick (``run_due_work``).
        """
        now = self.work.clock()
        await self._reset_requests.check(
            self.work.store.pool, now=now,
            client_hash=self.work.keys.client_address_hash(client_address or "unknown"),
        )
        await self.work.store.pool.execute(
            "INSERT INTO password_reset_requests (email_hash, requested_at) VALUES ($1, $2)",
            self.work.keys.email_hash(email), now,
        )

    async def run_due_work(self) -> int:
        """Reset requests in arrival order (one transaction each; SKIP LOCKED across replicas),
        then failures of unknown addresses older than the lockout window are forgotten, and
        the clients' ended request windows."""
        done = 0
        while True:
            async with self.work.store.transaction() as tx:
                row = await tx.connection.fetchrow(
                    "DELETE FROM password_reset_requests WHERE request_id = ("
                    "SELECT request_id FROM password_reset_requests ORDER BY request_id "
                    "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING email_hash"
                )
                if row is None:
                    await tx.connection.execute(
                        "DELETE FROM unknown_sign_ins WHERE last_failed_at < $1",
                        self.work.clock() - self._policy.window,
                    )
                    await self._reset_requests.purge(tx.connection, now=self.work.clock())
                    return done
                await self._reset_requested(tx, row["email_hash"])
            done += 1

    async def _reset_requested(self, tx: PostgresTransaction, email_hash: str) -> None:
        """A known, live account gets a reset token, sealed for the mailer on the event,
        unless it got its allowance of reset mails within the window: decided here, after
        the answer, so the answer stays the same for every address however often it is asked.
        Two replicas racing on one account append at the same version: one of them retries."""
        user_id: UUID | None = await tx.connection.fetchval(
            "SELECT user_id FROM credentials WHERE email_hash = $1", email_hash
        )
        if user_id is None:
            return
        user = await self.work.load_user(tx, user_id)
        now = self.work.clock()
        if not user.may_mail_reset(now, self._reset_mails):
            return
        token = new_secret_token()
        await tx.connection.execute(
            "INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at) "
            "VALUES ($1, $2, 'reset_password', $3)", token_hash(token), user_id,
            now + self._reset_ttl,
        )
        key = await delivery_key(self.work, tx, user_id=user_id, purpose="reset_password",
                                 expires_at=now + self._reset_ttl)
        address = (await profile(self.work, tx, user_id))["email"]
        event = PasswordResetRequested(
            user_id=user_id, expires_at=now + self._reset_ttl, reset_token=key.seal(token),
            email=address,
        )
        await self.work.append_to_user(tx, user, [event], actor=user_id)

    async def reset_password(self, token: str, new_password: str) -> UUID:
        async with self.work.store.transaction() as tx:
            user_id: UUID | None = await tx.connection.fetchval(
                "UPDATE one_time_tokens SET used_at = now() WHERE token_hash = $1 "
                "AND purpose = 'reset_password' AND used_at IS NULL AND expires_at > now() "
                "RETURNING user_id", token_hash(token),
            )
            if user_id is None:
                raise Problem(type_=INVALID_TOKEN, field="token", detail="ask for a new link")
            self._refuse_email_as_password(await tx.connection.fetchval(
                "SELECT email_hash FROM credentials WHERE user_id = $1", user_id), new_password)
            await self._set_password(tx, user_id, new_password, via_reset=True)
        return user_id


_REFUSALS: dict[LoginFailure, str] = {
    "email_unconfirmed": "confirm your e-mail address first",
    "account_suspended": "the account is suspended",
    "account_locked": "too many failed attempts; try again later",
    "account_deleted": "the account was deleted",
    "wrong_password": "check the e-mail and the password",
}
