"""Mail throughput: render + hand to a local SMTP sink, vs aiosmtplib sending pre-rendered mail.

Ours is the service's per-mail work without the database: render the
invitation template (Jinja2, Babel, a date in the platform's zone), build
the multipart message and send it through the service's SmtpMailer (one
reused connection). The peer sends the same messages, rendered beforehand,
with a bare aiosmtplib client on one connection. Both go to the same sink
(the local stack's, writing each message to disk). The ratio says what the
rendering costs on top of SMTP itself.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiosmtplib

from guestlist.stack.ports import free_port
from guestlist.stack.smtp_sink import SmtpSink
from services.notifications.domain import SAMPLE_PARAMS, SUPPORTED_LOCALES, Platform, TemplateName
from services.notifications.mailer import SmtpMailer
from services.notifications.rendering import Renderer, as_email

PLATFORM = Platform(name="Riverside Commons", time_zone="Europe/Kyiv", default_locale="en")


def _message(renderer: Renderer, n: int) -> EmailMessage:
    mail = renderer.render(
        TemplateName.INVITATION, locale=SUPPORTED_LOCALES[n % len(SUPPORTED_LOCALES)],
        platform=PLATFORM, params=SAMPLE_PARAMS[TemplateName.INVITATION],
        contact_email="help@riverside.example",
    )
    return as_email(mail, template=TemplateName.INVITATION, sender="no-reply@riverside.example",
                    to=f"person{n}@example.org", message_id=f"<{uuid4()}@bench>",
                    at=datetime.now(UTC))


async def ours_rate(renderer: Renderer, port: int, mails: int) -> float:
    mailer = SmtpMailer(host="127.0.0.1", port=port)
    try:
        started = time.perf_counter()
        for n in range(mails):
            await mailer.send(_message(renderer, n))
        return mails / (time.perf_counter() - started)
    finally:
        await mailer.close()


async def bare_rate(messages: list[EmailMessage], port: int) -> float:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    try:
        started = time.perf_counter()
        for message in messages:
            await client.send_message(message)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await client.quit()


async def run(*, mails: int = 500, rounds: int = 3) -> dict[str, Any]:
    """Median of ``rounds`` runs, the two sides taking turns at going first."""
    renderer = Renderer()
    prerendered = [_message(renderer, n) for n in range(mails)]
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        sink = SmtpSink(Path(directory), free_port())
        await sink.start()
        try:
            await ours_rate(renderer, sink.port, 20)  # warm-up: templates compiled, caches filled
            for round_ in range(rounds):
                if round_ % 2 == 0:
                    ours.append(await ours_rate(renderer, sink.port, mails))
                    theirs.append(await bare_rate(prerendered, sink.port))
                else:
                    theirs.append(await bare_rate(prerendered, sink.port))
                    ours.append(await ours_rate(renderer, sink.port, mails))
        finally:
            await sink.stop()
    return {
        "mails": mails,
        "rounds": rounds,
        "rendered_and_sent_per_s": round(statistics.median(ours), 1),
        "aiosmtplib_prerendered_per_s": round(statistics.median(theirs), 1),
        "ratio": round(statistics.median(o / t for o, t in zip(ours, theirs, strict=True)), 2),
    }
