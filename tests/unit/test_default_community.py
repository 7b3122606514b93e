"""One default community: the one everyone joins is the one an invitation's role names."""

from __future__ import annotations

from schemas.roles import DEFAULT_COMMUNITY_ID
from services.identity.account_handlers import DEFAULT_ROLE
from services.identity.handlers import PLATFORM_ID
from services.invitations.settings import InvitationsSettings

URL = "postgresql://guestlist:guestlist@127.0.0.1:5432/guestlist_invitations"


def test_everyone_registered_joins_the_default_community_as_a_member() -> None:
    assert DEFAULT_ROLE.role == "community_member"
    assert DEFAULT_ROLE.community_id == DEFAULT_COMMUNITY_ID


def test_an_invitation_role_without_a_community_is_for_the_one_everyone_joins() -> None:
    settings = InvitationsSettings(database_url=URL)

    assert settings.default_community_id == DEFAULT_ROLE.community_id


def test_the_default_community_has_the_platform_id() -> None:
    assert DEFAULT_COMMUNITY_ID == PLATFORM_ID
