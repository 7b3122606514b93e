"""guestlist."""
