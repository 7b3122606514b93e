"""Sessions and passwords: every sign-in, session and password command identity serves,
as one object for the routes and the scheduler.

Each seam lives in its own module, and this object only wires them: ``sign_in``
(sign-in with lockout), ``sessions`` (refresh rotation with reuse detection,
sign-out, access tokens) and ``password_handlers`` (change, reset request, reset).
Answers never tell whether an e-mail has an account, by content or by time.
"""

from __future__ import annotations

from datetime import timedelta

from eventkit.rate_limit import ClientWindowLimit
from services.identity.handlers import UnitOfWork
from services.identity.password_handlers import PasswordHandlers
from services.identity.policies import LockoutPolicy, ResetMailPolicy
from services.identity.sessions import Sessions
from services.identity.sign_in import SignIn
from services.identity.signing_keys import TokenMinter


class SessionHandlers:
    def __init__(
        self, work: UnitOfWork, *, minter: TokenMinter, policy: LockoutPolicy,
        refresh_ttl: timedelta, reset_ttl: timedelta,
        reset_mails: ResetMailPolicy, reset_requests: ClientWindowLimit,
    ) -> None:
        self.work = work
        self.minter = minter
        self.sessions = Sessions(work, minter=minter, refresh_ttl=refresh_ttl)
        self.sign_ins = SignIn(work, sessions=self.sessions, policy=policy)
        self.passwords = PasswordHandlers(
            work, policy=policy, reset_ttl=reset_ttl, reset_mails=reset_mails,
            reset_requests=reset_requests,
        )
        # The names the routes and the scheduler call.
        self.sign_in = self.sign_ins.sign_in
        self.refresh = self.sessions.refresh
        self.sign_out = self.sessions.sign_out
        self.change_password = self.passwords.change_password
        self.request_reset = self.passwords.request_reset
        self.reset_password = self.passwords.reset_password
        self.run_due_work = self.passwords.run_due_work
