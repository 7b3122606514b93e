"""The projections service's HTTP routes, under /v1."""

from __future__ import annotations

from fastapi import APIRouter


def build_router() -> APIRouter:
    return APIRouter(prefix="/v1", tags=["projections"])
