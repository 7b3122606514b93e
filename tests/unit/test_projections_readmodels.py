"""Read-model versions: table names, groups, DDL with the failed-events table; cursors;
which events a read model decodes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from eventkit.envelope import Envelope
from eventkit.http.problems import Problem
from eventkit.registry import InvalidEventData
from schemas.catalog import build_registry
from schemas.identity import LoginFailed, UserEmailConfirmed
from services.projections import directory, security_monitor
from services.projections.pages import decode_cursor, encode_cursor
from services.projections.readmodels import Decoder, Tables, group_name


def test_each_version_has_its_own_tables_indexes_group_and_failed_events() -> None:
    v2 = directory.READ_MODEL.create_sql(2)
    assert '"directory_users_v2"' in v2 and '"directory_roles_v2"' in v2
    assert '"directory_users_registered_v2"' in v2  # index names are per version too
    assert '"directory_failed_events_v2"' in v2
    assert "_v1" not in v2
    assert directory.READ_MODEL.drop_sql(3) == (
        'DROP TABLE IF EXISTS "directory_users_v3", "directory_roles_v3", '
        '"directory_inviters_v3", "directory_failed_events_v3" CASCADE')
    assert group_name("projections", "directory", 2) == "projections.directory.v2"
    assert Tables("security", 7)["events"] == '"security_events_v7"'
    with pytest.raises(ValueError, match="versions start at 1"):
        Tables("directory", 0)


def test_a_cursor_comes_back_as_it_went_out_and_only_for_its_sort() -> None:
    cursor = encode_cursor({"sort": "-registered_at", "key": "2030-01-01T00:00:00+00:00",
                            "id": "u-1"})
    assert decode_cursor(cursor, sort="-registered_at") == {
        "sort": "-registered_at", "key": "2030-01-01T00:00:00+00:00", "id": "u-1"}
    assert decode_cursor(None, sort="x") is None
    for bad, sort in ((cursor, "registered_at"), ("!!!", "x"), (encode_cursor({"a": 1}), "x")):
        with pytest.raises(Problem) as raised:
            decode_cursor(bad, sort=sort)
        assert raised.value.extra["errors"][0]["field"] == "cursor"


def test_a_read_model_decodes_only_the_events_it_follows() -> None:
    registry = build_registry()
    user = uuid.uuid4()

    def sent(type_name: str, data: dict[str, Any]) -> Envelope:
        return Envelope(id=uuid.uuid4(), type=type_name, subject=str(user),
                        time=datetime.now(UTC), actor_id="system", sequence=1,
                        data_json=json.dumps(data))

    confirmed = sent(str(UserEmailConfirmed.event_type), {"user_id": str(user)})
    # Broken data of a type the directory does not follow is never parsed, so never fails it;
    # a type no reader knows yet (a newer producer) is left out as well.
    broken_failure = sent(str(LoginFailed.event_type), {"user_id": "not a uuid"})
    newer = sent("guestlist.identity.UserRegistered.v9", {"user_id": str(user)})
    decode = Decoder(registry, directory.READ_MODEL.follows)
    changes = decode([confirmed, broken_failure, newer])
    assert [(c.envelope, c.event) for c in changes] == [
        (confirmed, UserEmailConfirmed(user_id=user))]
    # The security monitor follows sign-in failures: there the same data is an error.
    with pytest.raises(InvalidEventData):
        Decoder(registry, security_monitor.read_model().follows)([broken_failure])
