"""The projections service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from typing import Literal

from eventkit.settings import Port, ServiceSettings


class ProjectionsSettings(ServiceSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["projections"] = "projections"
    http_port: Port = 8005
