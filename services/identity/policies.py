"""Sign-in and reset limits: the lockout after failed sign-ins, and the reset mails an
account may get. Values set from the settings at start-up; ``domain.User`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """``threshold`` failed sign-ins within ``window`` lock the account for ``duration``."""

    threshold: int = 5
    window: timedelta = timedelta(minutes=15)
    duration: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ResetMailPolicy:
    """At most ``limit`` reset mails per account within ``window``: a known address cannot be
    flooded by anyone who types it in. Requests past it are dropped, the answer stays 202."""

    limit: int = 3
    window: timedelta = timedelta(hours=1)

