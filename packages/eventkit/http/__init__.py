"""The HTTP side every service shares: app factory, problems, auth, idempotency."""
