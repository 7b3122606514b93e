"""The account's state machine: the states an account can be in, the only moves between
them, and the refusals identity's rules raise (:class:`DomainError` and its kinds).

Pure: no I/O. ``domain.User`` checks each of its moves against ``TRANSITIONS``.
"""

from __future__ import annotations

from enum import StrEnum


class UserStatus(StrEnum):
    PENDING_CONFIRMATION = "pending_confirmation"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


# The only moves an account can make; anything else is refused.
TRANSITIONS: dict[UserStatus, frozenset[UserStatus]] = {
    UserStatus.PENDING_CONFIRMATION: frozenset({UserStatus.ACTIVE, UserStatus.DELETED}),
    UserStatus.ACTIVE: frozenset({UserStatus.SUSPENDED, UserStatus.DELETED}),
    UserStatus.SUSPENDED: frozenset({UserStatus.ACTIVE, UserStatus.DELETED}),
    UserStatus.DELETED: frozenset(),
}


class DomainError(Exception):
    """A rule refused the decision; ``code`` is stable, the message is safe to show."""

    code = "rule-broken"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the request field at fault, when one is


class InvalidTransition(DomainError):
    code = "invalid-transition"

    def __init__(self, current: UserStatus, wanted: UserStatus) -> None:
        super().__init__(f"an account that is {current} cannot become {wanted}")
        self.current = current
        self.wanted = wanted


class UnknownUser(DomainError):
    code = "unknown-user"
