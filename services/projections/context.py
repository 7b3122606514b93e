"""What the routes work with, put on ``app.state.projections`` by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from eventkit.position import PositionWaits
from eventkit.runtime import ServiceRuntime
from services.projections.live import LiveChanges
from services.projections.personal_data import Revealer
from services.projections.projector import Projector
from services.projections.settings import ProjectionsSettings


@dataclass(frozen=True, slots=True)
class ProjectionsContext:
    settings: ProjectionsSettings
    runtime: ServiceRuntime
    projector: Projector
    revealer: Revealer
    live: LiveChanges
    # Reads with min_position; woken by the live changes, which every replica hears.
    waits: PositionWaits


def context_of(request: Request) -> ProjectionsContext:
    context = request.app.state.projections
    assert isinstance(context, ProjectionsContext)
    return context
