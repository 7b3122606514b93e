"""Accounts: every account command identity serves, as one object for the routes and the CLI.

Each seam lives in its own module, and this object only wires them:
``platform_settings`` (the platform's settings), ``registration_handlers``
(registration, confirmation, the first platform manager), ``account_states``
(suspend, reactivate, delete, and the scheduled ones), ``erasure`` (what a
deletion destroys), ``role_handlers`` (grants, revocations) and
``profile_handlers`` (profile edits, the export's record).
"""

from __future__ import annotations

from datetime import timedelta

from services.identity.account_states import AccountStates
from services.identity.erasure import Erasure
from services.identity.handlers import UnitOfWork
from services.identity.platform_settings import DEFAULT_SETTINGS, PlatformSettingsHandlers
from services.identity.profile_handlers import ProfileHandlers
from services.identity.registration_handlers import DEFAULT_ROLE, Registered, RegistrationHandlers
from services.identity.role_handlers import RoleHandlers

__all__ = ["DEFAULT_ROLE", "DEFAULT_SETTINGS", "AccountHandlers", "Registered"]


class AccountHandlers:
    def __init__(
        self, work: UnitOfWork, *, confirmation_ttl: timedelta, deletion_grace: timedelta,
        deletion_notice_ttl: timedelta,
    ) -> None:
        self.work = work
        self.platform = PlatformSettingsHandlers(work)
        self.registration = RegistrationHandlers(work, platform=self.platform,
                                                 confirmation_ttl=confirmation_ttl)
        self.states = AccountStates(work, erasure=Erasure(work, notice_ttl=deletion_notice_ttl),
                                    deletion_grace=deletion_grace)
        self.roles = RoleHandlers(work)
        self.profiles = ProfileHandlers(work)
        # The names the routes, the scheduler and the CLI call.
        self.platform_settings = self.platform.current
        self.change_platform_settings = self.platform.change
        self.register = self.registration.register
        self.confirm = self.registration.confirm
        self.create_admin = self.registration.create_admin
        self.suspend = self.states.suspend
        self.reactivate = self.states.reactivate
        self.delete = self.states.delete
        self.request_deletion = self.states.request_deletion
        self.run_due_work = self.states.run_due_work
        self.grant = self.roles.grant
        self.revoke = self.roles.revoke
        self.update_profile = self.profiles.update_profile
        self.exported = self.profiles.exported
