"""Mail that carries a secret link (confirmation, password reset), sent by identity itself.

The token is never in an event, so the notifications service cannot send these.
Sending happens after the command committed, in the background; a mail server
that is down is logged (without the token) and the person can ask again.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from eventkit.logging import get_logger

log = get_logger("identity.mail")


class Mailer:
    def __init__(self, *, host: str, port: int, sender: str) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._sending: set[asyncio.Task[None]] = set()

    def send_later(self, *, to: str, subject: str, body: str) -> None:
        task = asyncio.create_task(self._send(to, subject, body))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._sender, to, subject
        message.set_content(body)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (OSError, smtplib.SMTPException) as error:
            log.warning("mail not sent", subject=subject, error=type(error).__name__)

    def _deliver(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=10) as smtp:
            smtp.send_message(message)

    async def drain(self) -> None:
        """Wait for mail in flight (at shutdown)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
