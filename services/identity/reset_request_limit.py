"""Password-reset requests per client address, counted in PostgreSQL for every replica.

The count does not depend on the e-mail asked for, so a 429 says nothing about
whether an address has an account. The per-account limit on mails is the
scheduler's (``domain.ResetMailPolicy``); this one only slows a client
spraying addresses.
"""

from __future__ import annotations

from datetime import timedelta

from eventkit.rate_limit import ClientWindowLimit


def reset_request_limit(limit: int, window: timedelta) -> ClientWindowLimit:
    return ClientWindowLimit("reset_request_windows", limit, window,
                             detail="too many reset requests; slow down")
