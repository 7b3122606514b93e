"""Problem details the projections routes answer with, beyond eventkit's catalogue."""

from __future__ import annotations

from eventkit.http.problems import SERVICE_UNAVAILABLE, VALIDATION_ERROR, Problem


def invalid(field: str, message: str, *, where: str = "query") -> Problem:
    """422 naming the field, as FastAPI's own validation errors do."""
    return Problem(type_=VALIDATION_ERROR, detail=f"Invalid fields: {field}",
                   errors=[{"field": field, "in": where, "message": message, "code": "invalid"}])


def keys_unavailable() -> Problem:
    return Problem(type_=SERVICE_UNAVAILABLE, detail="personal-data keys cannot be fetched "
                   "right now", headers={"Retry-After": "5"})
