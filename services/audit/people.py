"""The people an entry concerns besides its subject and actor: derived from its data, never hashed.

An ``InvitationAccepted``'s subject is the invitation and ``data.user_id`` the
person who accepted; a ``RoleGranted`` names ``granted_by``; a notification its
``recipient_user_id``; personal-data ciphertext (``pd1:<person id>:…``) names
the person whose key opens it. At ingest, every top-level data field whose name
ends in one of ``PERSON_FIELD_SUFFIXES`` and every ciphertext's subject id is
written to ``audit_log_people`` (person, sequence) in the append's transaction,
and the timeline reads it. It is derived from the hashed ``data`` column, so
it is in no hash and the log itself is never updated to hold it; the
migration that created it filled it for older entries by the same rules.
"""

from __future__ import annotations

import json
from typing import Any

from eventkit.personal_data import PREFIX

PERSON_FIELD_SUFFIXES = ("user_id", "person_id", "subject_id", "inviter_id", "_by")
# Longer values are no person id (and would make index rows needlessly large).
MAX_PERSON_ID = 200


def named_in(data: Any) -> dict[str, str]:
    """Each top-level field of ``data`` (a decoded JSON object) that names a person: its id."""
    if not isinstance(data, dict):
        return {}
    named: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str) or not value:
            continue
        if value.startswith(PREFIX):
            person, separator, _ = value[len(PREFIX):].partition(":")
            if not separator:
                continue
        elif name.endswith(PERSON_FIELD_SUFFIXES):
            person = value
        else:
            continue
        if 0 < len(person) <= MAX_PERSON_ID:
            named[name] = person
    return named


def also_concerned(data_json: str, *, subject: str, actor: str) -> set[str]:
    """The people ``data_json`` names other than ``subject`` and ``actor`` (indexed already)."""
    try:
        data = json.loads(data_json)
    except ValueError:
        return set()
    return set(named_in(data).values()) - {subject, actor}
