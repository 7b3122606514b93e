"""Sessions: opening one with its first refresh token, refresh rotation with reuse
detection, sign-out, and access tokens that verifiers accept even right after a revocation.

A refresh token is used once: its successor replaces it, and a replaced token
presented again ends its whole session (``SessionsRevoked``, ``refresh_token_reused``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from eventkit.http.problems import Problem
from eventkit.postgres_store import PostgresTransaction
from schemas.identity import SessionsRevoked
from services.identity.domain import User
from services.identity.handlers import UnitOfWork, new_secret_token, token_hash
from services.identity.problems import INVALID_REFRESH_TOKEN
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


class Sessions:
    def __init__(self, work: UnitOfWork, *, minter: TokenMinter, refresh_ttl: timedelta) -> None:
        self.work = work
        self.minter = minter
        self.refresh_ttl = refresh_ttl

    async def mint(self, user: User, session_id: UUID) -> AccessToken:
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

    async def open_session(
        self, tx: PostgresTransaction, user_id: UUID, session_id: UUID, now: datetime
    ) -> str:
        await tx.connection.execute(
            "INSERT INTO sessions (session_id, user_id, expires_at) VALUES ($1, $2, $3)",
            session_id, user_id, now + self.refresh_ttl,
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
        access = await self.mint(user, session_id)
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
