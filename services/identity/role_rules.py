"""Role rules: who may grant or revoke which role, and the permissions roles give where.

Pure: no I/O. ``domain.User`` checks every grant and revocation a person makes here;
the system's own grants (default role, an invitation's roles, the first admin) skip it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from schemas.permissions import Permission, permissions_of
from schemas.roles import RoleAssignment
from services.identity.account_status import DomainError


class GrantRefused(DomainError):
    code = "grant-refused"


@dataclass(frozen=True, slots=True)
class Granter:
    """Who grants or revokes a role, with the roles they hold now (not those in their token)."""

    user_id: UUID
    roles: frozenset[RoleAssignment]


def effective_permissions(
    roles: Iterable[RoleAssignment], community_id: UUID | None
) -> frozenset[Permission]:
    """Permissions that count in ``community_id`` (None: the platform only)."""
    held = [
        r.role for r in roles
        if r.scope == "platform" or (community_id is not None and r.community_id == community_id)
    ]  # fmt: skip
    return permissions_of(held)


def check_grant(granter: Granter, assignment: RoleAssignment) -> None:
    """Raise GrantRefused unless ``granter`` may grant (or revoke) ``assignment``.

    - platform roles need ``manage_platform_roles``; community roles need it or
      ``manage_community_roles`` in that community;
    - ``platform_manager`` is granted only by a platform manager;
    - nobody hands out a permission they do not hold themselves.
    """
    held = effective_permissions(granter.roles, assignment.community_id)
    if assignment.scope == "platform":
        if "manage_platform_roles" not in held:
            raise GrantRefused("platform roles need the manage_platform_roles permission")
    elif not {"manage_platform_roles", "manage_community_roles"} & held:
        raise GrantRefused(
            "community roles need manage_community_roles in that community "
            "(or manage_platform_roles)"
        )
    if assignment.role == "platform_manager" and not any(
        r.role == "platform_manager" for r in granter.roles
    ):
        raise GrantRefused("only a platform manager can make someone a platform manager")
    missing = permissions_of([assignment.role]) - held
    if missing:
        raise GrantRefused(
            f"{assignment.role} carries permissions you do not hold: {', '.join(sorted(missing))}"
        )

