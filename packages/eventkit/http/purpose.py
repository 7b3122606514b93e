"""``X-Purpose``: why a caller reads personal data, recorded with each read.

One header for every service that serves personal data, so a client sends
the same value everywhere and the access events say it in the same form.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

# A short identifier, e.g. support_ticket or gdpr_request.
PURPOSE_PATTERN = r"^[a-z][a-z0-9_]{0,99}$"

Purpose = Annotated[
    str | None,
    Header(alias="X-Purpose", pattern=PURPOSE_PATTERN,
           description="Why personal data is read, e.g. support_ticket; recorded."),
]
