"""The role -> permission table: the one place that says what each role may do.

Identity puts the permissions of a person's roles into every access token it
signs; other services check a permission name, never a role name, so this
table can change without touching them. Platform roles act on the whole
platform. Community roles act inside one community; a token lists the union
of the person's permissions over all their communities, so a service that
must know *which* community checks the person's roles (from ``RoleGranted``
events) as well.

``read_personal_data_keys`` belongs to no role: identity gives it only to
service clients (tokens with ``sub`` = ``service:<name>``, see identity's
``POST /v1/service-tokens``), so no person can fetch decryption keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args

from schemas.roles import COMMUNITY_ROLES, PLATFORM_ROLES, Role

Permission = Literal[
    # platform administration
    "manage_platform_users",
    "manage_platform_roles",
    "manage_platform_settings",
    "manage_invitations",
    "view_platform_analytics",
    "view_platform_logs",
    # people (personal data)
    "read_person",
    "list_person",
    "update_person",
    "delete_person",
    # the audit log
    "view_audit_log",
    "export_audit_log",
    # inside a community
    "view_community",
    "post_in_community",
    "create_community_content",
    "moderate_community_content",
    "manage_community_events",
    "view_community_analytics",
    "manage_community_roles",
    # service clients only
    "read_personal_data_keys",
]
PERMISSIONS: Final[tuple[Permission, ...]] = get_args(Permission)
SERVICE_ONLY_PERMISSIONS: Final[frozenset[Permission]] = frozenset({"read_personal_data_keys"})

_COMMUNITY_BASE: tuple[Permission, ...] = ("view_community", "post_in_community")

_TABLE: dict[Role, tuple[Permission, ...]] = {
    # Holds every permission a person can hold, so it can grant any role.
    "platform_manager": tuple(p for p in PERMISSIONS if p not in SERVICE_ONLY_PERMISSIONS),
    "platform_tech_support": (
        "read_person", "list_person", "update_person", "view_platform_logs", "manage_invitations",
    ),
    "platform_developer": ("view_platform_logs", "view_platform_analytics"),
    "platform_quality_assurance_lead": ("view_platform_logs", "view_platform_analytics"),
    "platform_accessibility_officer": ("view_platform_analytics",),
    "platform_infrastructure_architect": (
        "view_platform_logs", "view_platform_analytics", "manage_platform_settings",
    ),
    "platform_analytics_viewer": ("view_platform_analytics",),
    "platform_compliance_officer": (
        "view_audit_log", "export_audit_log", "read_person", "list_person", "view_platform_logs",
    ),
    "community_member": _COMMUNITY_BASE,
    "community_contributor": (*_COMMUNITY_BASE, "create_community_content"),
    "community_facilitator": (*_COMMUNITY_BASE, "moderate_community_content"),
    "community_coordinator": (*_COMMUNITY_BASE, "manage_community_events"),
    "community_content_curator": (
        *_COMMUNITY_BASE, "create_community_content", "moderate_community_content",
    ),
    "community_strategist": (*_COMMUNITY_BASE, "view_community_analytics"),
    "community_legal_advisor": (*_COMMUNITY_BASE, "view_community_analytics", "read_person"),
    "community_governance_council": (
        *_COMMUNITY_BASE, "moderate_community_content", "manage_community_roles",
        "manage_invitations",
    ),
    "community_organizer": (
        *_COMMUNITY_BASE, "moderate_community_content", "manage_community_events",
        "manage_community_roles", "manage_invitations", "list_person",
    ),
}  # fmt: skip

ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {role: frozenset(permissions) for role, permissions in _TABLE.items()}
)


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    """Everything the holder of ``roles`` may do (the union of their permissions)."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def _check_table() -> None:
    # Every role has a row, and no person's role carries a service-only permission.
    missing = (set(PLATFORM_ROLES) | set(COMMUNITY_ROLES)) - ROLE_PERMISSIONS.keys()
    if missing:
        raise RuntimeError(f"roles without permissions: {sorted(missing)}")
    for role, permissions in ROLE_PERMISSIONS.items():
        if permissions & SERVICE_ONLY_PERMISSIONS:
            raise RuntimeError(f"{role} carries a service-only permission")


_check_table()
