"""An SMTP server that delivers nothing: every message lands as a `.eml` file.

The local stack points the notifications service at it, so e-mails can be read
(or asserted on in tests) without any real mail system. File names sort in
the order the messages arrived. Run it alone with:

    python -m guestlist.stack.smtp_sink --port 1025 --dir var/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope

from guestlist.stack.ports import LOOPBACK

DEFAULT_PORT = 1025


class MailDrop:
    """The aiosmtpd handler: writes each accepted message into `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sequence = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        newline = b"\r\n" if b"\r\n" in raw else b"\n"
        # The envelope is not part of the message; keep it for readers that assert on it.
        envelope_headers = (
            f"X-Envelope-From: {envelope.mail_from}".encode()
            + newline
            + f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}".encode()
            + newline
        )
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{next(self._sequence):06d}"
        name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        await asyncio.to_thread(self._write, name, envelope_headers + raw)
        return "250 Message accepted for delivery"

    def _write(self, name: str, content: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a reader polling for *.eml never sees half a message.
        partial = self.directory / f".{name}.part"
        partial.write_bytes(content)
        os.replace(partial, self.directory / name)


class SmtpSink:
    """The sink as a server on the running event loop."""

    def __init__(self, directory: Path, port: int = DEFAULT_PORT, host: str = LOOPBACK) -> None:
        self.directory = directory
        self.port = port
        self.host = host
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        drop = MailDrop(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = await loop.create_server(
            lambda: SMTP(drop, hostname="guestlist-smtp-sink", enable_SMTPUTF8=True, loop=loop),
            host=self.host,
            port=self.port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None

    def messages(self) -> list[Path]:
        """The received messages, oldest first."""
        return sorted(self.directory.glob("*.eml"))


async def serve(directory: Path, port: int, host: str) -> None:
    sink = SmtpSink(directory, port, host)
    await sink.start()
    print(f"SMTP sink on {host}:{port}, writing to {directory}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP sink: store every message as .eml")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"), dest="directory")
    args = parser.parse_args()
    asyncio.run(serve(args.directory, args.port, args.host))


if __name__ == "__main__":
    main()
