"""The SMTP sink keeps every message it receives, in arrival order."""

from __future__ import annotations

import asyncio
import email
import smtplib
import sys
from email.message import EmailMessage
from email.policy import default

from guestlist.stack.ports import free_port, port_open
from guestlist.stack.smtp_sink import SmtpSink


def _send(port: int, to: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "noreply@guestlist.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Willkommen, Zoë!")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


async def test_each_message_becomes_an_eml_file_in_arrival_order(smtp_sink: SmtpSink) -> None:
    for n in range(3):
        await asyncio.to_thread(_send, smtp_sink.port, f"guest{n}@example.org", f"Invitation {n}")

    files = smtp_sink.messages()
    parsed = [email.message_from_bytes(f.read_bytes(), policy=default) for f in files]
    assert [m["Subject"] for m in parsed] == ["Invitation 0", "Invitation 1", "Invitation 2"]
    assert parsed[1]["X-Envelope-To"] == "guest1@example.org"
    assert parsed[0].get_content().strip() == "Willkommen, Zoë!"


async def test_the_sink_runs_as_a_module(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guestlist.stack.smtp_sink",
        "--port", str(port), "--dir", str(tmp_path / "mail"),
    )  # fmt: skip
    try:
        for _ in range(100):
            if await port_open(port):
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(_send, port, "ada@example.org", "Hello")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    [message] = list((tmp_path / "mail").glob("*.eml"))
    assert b"Subject: Hello" in message.read_bytes()
