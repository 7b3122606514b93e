"""Roles: grants and revocations, each checked against what the granter holds now (``domain``).

Revoking a role ends the person's sessions, so a token that still lists the
role's permissions is refused at once.
"""

from __future__ import annotations

from uuid import UUID

from schemas.roles import RoleAssignment
from services.identity.commands import GrantRole
from services.identity.handlers import UnitOfWork, Written
from services.identity.role_rules import Granter


class RoleHandlers:
    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    async def grant(self, user_id: UUID, command: GrantRole, *, by: UUID) -> Written:
        assignment = RoleAssignment(role=command.role, scope=command.scope,
                                    community_id=command.community_id)
        async with self.work.transaction() as tx:
            granter = await self.work.load_user(tx, by)
            user = await self.work.existing_user(tx, user_id)
            events = user.grant_role(assignment, granter=Granter(by, frozenset(granter.roles)))
            return await self.work.append_to_user(tx, user, events, actor=by)

    async def revoke(self, user_id: UUID, assignment: RoleAssignment, *, by: UUID) -> Written:
        now = self.work.clock()
        async with self.work.transaction() as tx:
            revoker = await self.work.load_user(tx, by)
            user = await self.work.existing_user(tx, user_id)
            events = user.revoke_role(
                assignment, revoker=Granter(by, frozenset(revoker.roles)), now=now
            )
            written = await self.work.append_to_user(tx, user, events, actor=by)
        self.work.apply_revocations(events, now)
        return written
