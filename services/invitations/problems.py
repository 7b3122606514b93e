"""The problem documents the invitations service answers with, and how rule breaks map to them."""

from __future__ import annotations

from eventkit.http.problems import (
    CONFLICT,
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    VALIDATION_ERROR,
    Problem,
    ProblemType,
)
from eventkit.store import ConcurrencyError
from services.invitations.domain import (
    DuplicatePendingInvitation,
    InvalidValidity,
    InvitationRuleBroken,
    NotPending,
    NotYetValid,
    ResendThrottled,
    RoleNotGrantable,
)
from services.invitations.handlers import InvitationNotFound, PersonalDataErased

DUPLICATE_INVITATION = ProblemType(
    "duplicate-invitation", "This e-mail address already has a pending invitation", 409
)
INVITATION_NOT_PENDING = ProblemType(
    "invitation-not-pending", "The invitation is no longer pending", 409
)
ROLE_NOT_GRANTABLE = ProblemType(
    "role-not-grantable", "You cannot assign this role", 403
)
PERSONAL_DATA_ERASED = ProblemType(
    "personal-data-erased", "The invitation's personal data was erased", 410
)


def problem_for(error: Exception) -> Problem | None:
    """The problem for a known failure; None for anything else (a real 500)."""
    if isinstance(error, DuplicatePendingInvitation):
        return Problem(type_=DUPLICATE_INVITATION, detail=str(error),
                       existing_invitation_id=str(error.existing_id),
                       existing_invitation=f"/v1/invitations/{error.existing_id}")
    if isinstance(error, ResendThrottled):
        return Problem(type_=TOO_MANY_REQUESTS, detail=str(error),
                       headers={"Retry-After": str(error.retry_after_seconds)},
                       retry_after=error.retry_after_seconds)
    if isinstance(error, RoleNotGrantable):
        return Problem(type_=ROLE_NOT_GRANTABLE, detail=str(error), field=error.field)
    if isinstance(error, InvalidValidity):
        return invalid_field(str(error), error.field or "valid_until")
    if isinstance(error, NotPending):
        return Problem(type_=INVITATION_NOT_PENDING, detail=str(error), status_now=error.status)
    if isinstance(error, NotYetValid):
        return Problem(type_=CONFLICT, detail=str(error))
    if isinstance(error, InvitationRuleBroken):
        return invalid_field(str(error), error.field or "body")
    if isinstance(error, InvitationNotFound):
        return Problem(type_=NOT_FOUND, detail="no such invitation")
    if isinstance(error, PersonalDataErased):
        return Problem(type_=PERSONAL_DATA_ERASED,
                       detail="the invitee's data was erased; the code can no longer be shown")
    if isinstance(error, ConcurrencyError):
        return Problem(type_=CONFLICT, detail="the invitation changed meanwhile; try again",
                       headers={"Retry-After": "1"})
    return None


def invalid_field(message: str, field: str, *, where: str = "body") -> Problem:
    return Problem(
        type_=VALIDATION_ERROR, detail=f"Invalid fields: {field}",
        errors=[{"field": field, "in": where, "message": message, "code": "invalid"}],
    )
