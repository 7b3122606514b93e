"""The local stack: real PostgreSQL, Kafka and SMTP servers run without Docker.

Used by `guestlist up` and by the test harness (`tests/conftest.py`).
"""
