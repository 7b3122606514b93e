"""The role -> permission table: one row per role, least privilege, no service-only permission."""

from __future__ import annotations

from schemas.permissions import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    SERVICE_ONLY_PERMISSIONS,
    permissions_of,
)
from schemas.roles import COMMUNITY_ROLES, PLATFORM_ROLES


def test_every_role_has_a_row() -> None:
    assert set(ROLE_PERMISSIONS) == set(PLATFORM_ROLES) | set(COMMUNITY_ROLES)


def test_the_platform_manager_holds_every_permission_a_person_can_hold() -> None:
    assert permissions_of(["platform_manager"]) == set(PERMISSIONS) - SERVICE_ONLY_PERMISSIONS


def test_no_role_reads_personal_data_keys() -> None:
    assert all("read_personal_data_keys" not in p for p in ROLE_PERMISSIONS.values())


def test_the_design_examples_are_held_by_someone() -> None:
    held = set().union(*ROLE_PERMISSIONS.values())
    for example in ("manage_platform_users", "manage_platform_roles", "manage_platform_settings",
                    "manage_invitations", "view_platform_analytics", "view_platform_logs",
                    "read_person", "list_person", "update_person", "delete_person",
                    "view_audit_log", "export_audit_log"):
        assert example in held


def test_a_member_cannot_administer_anything() -> None:
    assert permissions_of(["community_member"]) == {"view_community", "post_in_community"}


def test_only_the_compliance_officer_and_the_manager_read_the_audit_log() -> None:
    readers = {role for role, perms in ROLE_PERMISSIONS.items() if "view_audit_log" in perms}
    assert readers == {"platform_manager", "platform_compliance_officer"}
