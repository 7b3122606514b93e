"""The SMTP side: hand a message to the configured server with aiosmtplib, say how it went.

One connection is kept open and reused between messages; any error closes
it, and the next message opens a fresh one. Every failure is reported as a
:class:`SendFailure` with the server's code (None when there was no answer)
and a reason with e-mail addresses blanked out, so it can be logged, stored
and put into events.
"""

from __future__ import annotations

import asyncio
import re
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from services.notifications.domain import is_temporary

_ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"']+")


class SendFailure(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code or 'no answer'}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def temporary(self) -> bool:
        return is_temporary(self.code)


def without_addresses(text: str) -> str:
    return _ADDRESS.sub("[address]", text)[:1000]


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Returns once the server accepted the message; raises SendFailure otherwise."""
        ...

    async def close(self) -> None: ...


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = aiosmtplib.SMTP(
            hostname=self._host, port=self._port, timeout=self._timeout,
            use_tls=self._security == "tls", start_tls=self._security == "starttls",
        )  # fmt: skip
        await client.connect()
        if self._username is not None and self._password is not None:
            await client.login(self._username, self._password)
        self._client = client
        return client

    async def send(self, message: EmailMessage) -> None:
        async with self._lock:  # one conversation at a time on the shared connection
            try:
                client = await self._connected()
                # A refused recipient raises; a partial acceptance cannot happen with one.
                await client.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as error:
                await self._drop()
                first = error.recipients[0] if error.recipients else None
                code = first.code if first is not None else 550
                reason = first.message if first is not None else str(error)
                raise SendFailure(code, without_addresses(reason)) from None
            except aiosmtplib.SMTPResponseException as error:
                await self._drop()
                raise SendFailure(error.code, without_addresses(error.message)) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                await self._drop()
                reason = without_addresses(f"{type(error).__name__}: {error}")
                raise SendFailure(None, reason) from None

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
