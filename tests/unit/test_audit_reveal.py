"""The audit timeline opens an event's personal values with the keys of the service it came
from: an invitation's values are asked of invitations, a person's of identity alone (so an
erasure reads [erased] even while invitations cannot be reached)."""

from __future__ import annotations

from uuid import uuid4

from eventkit.personal_data import ERASED, KeyOwners, KeyUnavailable, encrypt_value, new_data_key
from services.audit.queries import reveal


class Owner:
    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys
        self.asked: list[str] = []

    async def key_for(self, subject_id: str) -> bytes | None:
        self.asked.append(subject_id)
        return self.keys.get(subject_id)


async def test_an_invitations_values_are_asked_of_the_invitations_service() -> None:
    invitation, key = str(uuid4()), new_data_key()
    identity, invitations = Owner({}), Owner({invitation: key})
    data = {"invitee_email": encrypt_value("camille@example.org", subject_id=invitation,
                                           key=key), "locale": "fr"}

    shown = await reveal(data, KeyOwners({"identity": identity, "invitations": invitations}),
                         source="/guestlist/invitations")

    assert shown == {"invitee_email": "camille@example.org", "locale": "fr"}
    assert (identity.asked, invitations.asked) == ([], [invitation])


class Unreachable:
    async def key_for(self, subject_id: str) -> bytes | None:
        raise KeyUnavailable("invitations is down")


async def test_a_persons_erased_value_reads_erased_while_invitations_is_down() -> None:
    data = {"email": encrypt_value("ada@example.org", subject_id=str(uuid4()),
                                   key=new_data_key())}
    owners = KeyOwners({"identity": Owner({}), "invitations": Unreachable()})

    assert await reveal(data, owners, source="/guestlist/identity") == {"email": ERASED}
