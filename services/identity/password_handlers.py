"""Passwords: a person changes theirs, asks for a reset link, and sets a new one with it.

A reset request is one insert for any address, so the answer cannot tell known
from unknown; the scheduler (``run_due_work``) looks the address up afterwards
and mails a token only to a live account within its allowance. A new password
ends every session of the account.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from eventkit.http.problems import Problem
from eventkit.postgres_store import PostgresTransaction
from eventkit.rate_limit import ClientWindowLimit
from schemas.identity import PasswordChanged, PasswordResetRequested, SessionsRevoked
from services.identity.handlers import UnitOfWork, new_secret_token, token_hash
from services.identity.passwords import hash_password, verify_password
from services.identity.policies import LockoutPolicy, ResetMailPolicy
from services.identity.problems import INVALID_CREDENTIALS, INVALID_TOKEN, WEAK_PASSWORD
from services.identity.queries import profile
from services.identity.service_clients import delivery_key


class PasswordHandlers:
    def __init__(
        self, work: UnitOfWork, *, policy: LockoutPolicy, reset_ttl: timedelta,
        reset_mails: ResetMailPolicy, reset_requests: ClientWindowLimit,
    ) -> None:
        self.work = work
        self._policy = policy  # its window also bounds how long unknown addresses' failures stay
        self._reset_ttl = reset_ttl
        self._reset_mails = reset_mails
        self._reset_requests = reset_requests

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
