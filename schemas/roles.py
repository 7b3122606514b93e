"""Role names, in the one place every service takes them from.

The lists are those of DESIGN.md ("Roles and permissions"). The role to
permission table belongs here too, next to the names it refers to.
"""

from __future__ import annotations

from typing import Literal, Self, get_args
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, model_validator

# The one default community: everyone registered joins it as community_member, and an
# invitation's community role that names no community is for it. Its id is the platform's
# (identity's platform settings stream), so a platform has exactly one.
DEFAULT_COMMUNITY_ID = uuid5(NAMESPACE_URL, "https://guestlist.dev/platform")

PlatformRole = Literal[
    "platform_manager",
    "platform_tech_support",
    "platform_developer",
    "platform_quality_assurance_lead",
    "platform_accessibility_officer",
    "platform_infrastructure_architect",
    "platform_analytics_viewer",
    "platform_compliance_officer",
]
CommunityRole = Literal[
    "community_member",
    "community_contributor",
    "community_facilitator",
    "community_coordinator",
    "community_content_curator",
    "community_strategist",
    "community_legal_advisor",
    "community_governance_council",
    "community_organizer",
]
Role = PlatformRole | CommunityRole
RoleScope = Literal["platform", "community"]

PLATFORM_ROLES: tuple[PlatformRole, ...] = get_args(PlatformRole)
COMMUNITY_ROLES: tuple[CommunityRole, ...] = get_args(CommunityRole)
# Everyone registered holds this in the default community.
DEFAULT_COMMUNITY_ROLE: CommunityRole = "community_member"


def scope_of(role: Role) -> RoleScope:
    return "platform" if role in PLATFORM_ROLES else "community"


class RoleAssignment(BaseModel):
    """A role with where it applies: the platform, or one community.

    A platform role never names a community; a community role always does,
    so a grant can never be read as wider than it was meant.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    scope: RoleScope
    community_id: UUID | None = None

    @model_validator(mode="after")
    def _scope_matches_role(self) -> Self:
        check_scope(self.role, self.scope, self.community_id)
        return self


def check_scope(role: Role, scope: RoleScope, community_id: UUID | None) -> None:
    """Raise ValueError unless ``scope`` and ``community_id`` fit ``role``."""
    if scope != scope_of(role):
        raise ValueError(f"{role} is a {scope_of(role)} role, not a {scope} one")
    if scope == "platform" and community_id is not None:
        raise ValueError("a platform role names no community_id")
    if scope == "community" and community_id is None:
        raise ValueError("a community role needs its community_id")
