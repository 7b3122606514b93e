"""Identity's own problem types, and how domain errors become them."""

from __future__ import annotations

from eventkit.http.problems import Problem, ProblemType
from services.identity.account_status import DomainError, InvalidTransition, UnknownUser
from services.identity.registration import InvitationRefused
from services.identity.role_rules import GrantRefused

INVALID_CREDENTIALS = ProblemType("invalid-credentials", "E-mail or password is wrong", 401)
ACCOUNT_UNAVAILABLE = ProblemType("account-unavailable", "The account cannot sign in now", 403)
INVALID_TOKEN = ProblemType("invalid-token", "The token is unknown, used or expired", 400)
INVALID_REFRESH_TOKEN = ProblemType(
    "invalid-refresh-token", "The refresh token is unknown, used or expired", 401
)
EMAIL_TAKEN = ProblemType("email-taken", "An account with this e-mail exists", 409)
WEAK_PASSWORD = ProblemType("weak-password", "The password is not acceptable", 422)
INVALID_TRANSITION = ProblemType("invalid-transition", "The account cannot make this change", 409)
GRANT_REFUSED = ProblemType("grant-refused", "You cannot grant or revoke this role", 403)
USER_NOT_FOUND = ProblemType("user-not-found", "No such user", 404)
RULE_BROKEN = ProblemType("rule-broken", "The change breaks a rule", 422)
PURPOSE_REQUIRED = ProblemType("purpose-required", "Say why you read personal data", 400)
INVITATION_PROBLEMS = {
    slug: ProblemType(slug, title, 422)
    for slug, title in (
        ("invitation-required", "An invitation code is required"),
        ("invitation-unknown", "The invitation code is unknown"),
        ("invitation-revoked", "The invitation was revoked"),
        ("invitation-used", "The invitation was already used"),
        ("invitation-expired", "The invitation has expired"),
        ("invitation-not-yet-valid", "The invitation is not valid yet"),
    )
}


def problem_for(error: DomainError) -> Problem:
    if isinstance(error, InvitationRefused):
        return Problem(type_=INVITATION_PROBLEMS[error.code], detail=str(error),
                       field="invitation_code")
    if isinstance(error, InvalidTransition):
        return Problem(type_=INVALID_TRANSITION, detail=str(error), status_now=error.current)
    if isinstance(error, GrantRefused):
        return Problem(type_=GRANT_REFUSED, detail=str(error))
    if isinstance(error, UnknownUser):
        return Problem(type_=USER_NOT_FOUND, detail=str(error))
    if error.field is not None:
        return Problem(type_=RULE_BROKEN, detail=str(error), field=error.field)
    return Problem(type_=RULE_BROKEN, detail=str(error))
