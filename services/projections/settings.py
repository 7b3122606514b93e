"""The projections service's settings: eventkit's ServiceSettings plus the read models' own.

Personal data shown by the directory and the invitation board is opened at
read time with keys from identity (people) and invitations (invitees),
fetched with the service client ``SERVICE_CLIENT_ID`` / ``SERVICE_CLIENT_SECRET``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from eventkit.settings import KeyReaderSettings, Port

_NAME = r"^[A-Za-z0-9._-]+$"


class ProjectionsSettings(KeyReaderSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["projections"] = "projections"
    http_port: Port = 8005

    # Each read model version consumes as group <prefix>.<read model>.v<version>.
    projections_group_prefix: str = Field(default="projections", pattern=_NAME)
    # Topics read; overridable so tests can run on topics of their own.
    user_topic: str = Field(default="identity.user", pattern=_NAME)
    platform_topic: str = Field(default="identity.platform", pattern=_NAME)
    invitation_topic: str = Field(default="invitations.invitation", pattern=_NAME)
    delivery_topic: str = Field(default="notifications.delivery", pattern=_NAME)
    # Where PersonalDataViewed goes.
    access_topic: str = Field(default="projections.access", pattern=_NAME)

    # How long a read with min_position waits for its read model at most.
    read_wait_seconds: float = Field(default=5.0, ge=0, le=60)
    # How often the projector looks for a switched version (after a rebuild).
    version_poll_seconds: float = Field(default=1.0, gt=0)
    # A search (q=) opens at most this many candidates' personal data per request.
    search_scan_limit: int = Field(default=5000, ge=1)

    # Security monitor: this many failed sign-ins within the window, then a success,
    # is reported as a possible takeover.
    takeover_failures: int = Field(default=5, ge=1)
    takeover_window_seconds: int = Field(default=900, ge=1)

    # Identity's and invitations' key endpoints and the client: eventkit's KeyReaderSettings.
    service_client_id: str = "projections"
