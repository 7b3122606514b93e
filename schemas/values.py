"""Value types the event contracts share.

Personal fields are plain bounded strings, not e-mail or IP formats: the
owning service replaces their values with ciphertext before they leave it, and
after erasure a reader sees a placeholder, yet the event must still decode.
The plain-text formats are checked where the value enters, in the commands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from eventkit.registry import PERSONAL


def _in_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# Any offset is accepted on read; stored and compared in UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_utc)]

# Bounds leave room for the encrypted form, which is longer than the plain value.
Email = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    PERSONAL,
    Field(description="Personal data: an e-mail address, or its encrypted form."),
]
PersonName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    PERSONAL,
    Field(description="Personal data: a person's display name, or its encrypted form."),
]
Greeting = Annotated[
    str,
    StringConstraints(min_length=1, max_length=16384),
    PERSONAL,
    Field(description="Personal data: a personal message to the invitee, or its encrypted form."),
]
IpAddress = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    PERSONAL,
    Field(description="Personal data: a client IP address, or its encrypted form."),
]

# A BCP 47 language tag such as "en" or "pt-BR". A pattern rather than a list:
# widening a Literal would make older readers reject events with a new locale.
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")]
# An IANA time zone name such as "Europe/Berlin" or "UTC".
TimeZone = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
]
# Free text written by staff (a suspension reason): not personal data by
# contract, so it must not name people.
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
# A keyed SHA-256 digest in hex: lets a service match a secret without holding it.
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# "GET /v1/users/{user_id}": the route template, never the filled-in path.
Endpoint = Annotated[
    str,
    StringConstraints(pattern=r"^(GET|HEAD|POST|PUT|PATCH|DELETE) /\S*$", max_length=300),
]
# A snake_case identifier chosen by a service, e.g. a template or purpose name.
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,99}$")]
