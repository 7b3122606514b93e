"""The service killed in the middle of a batch of mails, then restarted: every mail arrives once.

The service runs in a subprocess (this file, run as a script). Its mailer
kills the process with ``os._exit`` just before handing the server the
(N+1)-th message of a batch it had claimed: N mails are out and recorded,
the rest of the batch is claimed and in flight, the rest not yet claimed.
The restarted service takes the in-flight rows over once their lease ran
out. The mail server counts every message by its Message-ID.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

CRASH_EXIT_CODE = 17
PEOPLE = 24
CRASH_AFTER = 7
TIMEOUT = 120.0


async def _serve(stored_keys: dict[str, str], crash_after: int | None) -> None:
    from asgi_lifespan import LifespanManager
    from test_notifications_delivery import MemoryKeys as Keys

    from eventkit.personal_data import KeyOwners
    from services.notifications.bootstrap import build_app
    from services.notifications.mailer import SmtpMailer
    from services.notifications.settings import NotificationsSettings

    settings = NotificationsSettings()  # from the environment the test gives
    keys = Keys()
    keys.keys = {subject: base64.b64decode(key)
                 for subject, key in stored_keys.items()}
    smtp = SmtpMailer(host=settings.smtp_host, port=settings.smtp_port)

    class CrashingMailer:
        sent = 0

        async def send(self, message: EmailMessage) -> None:
            if crash_after is not None and self.sent == crash_after:
                print(f"CRASHING after {self.sent}", flush=True)
                os._exit(CRASH_EXIT_CODE)
            await smtp.send(message)
            self.sent += 1

        async def close(self) -> None:
            await smtp.close()

    app = build_app(settings, mailer=CrashingMailer(),
                    personal_data=KeyOwners({"identity": keys, "invitations": keys}))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    async with LifespanManager(app, startup_timeout=TIMEOUT, shutdown_timeout=TIMEOUT):
        print("SERVING", flush=True)
        await stopping.wait()


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(Path(sys.argv[1]).read_text()),
                       int(sys.argv[2]) if len(sys.argv) > 2 else None))
    sys.exit(0)


from test_notifications_delivery import (  # noqa: E402 - the script part above needs none of it
    MailServer,
    MemoryKeys,
    Topics,
    envelope,
    platform,
    registered,
    smtp_server,
)

from eventkit.publisher import KafkaPublisher  # noqa: E402
from guestlist.stack.kafka import create_topics  # noqa: E402
from schemas.catalog import build_registry  # noqa: E402
from schemas.identity import UserSuspended  # noqa: E402

pytestmark = pytest.mark.integration


async def _spawn(log: Path, keys: Path, env: dict[str, str], *args: str
                 ) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, __file__, str(keys), *args, env=env, stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


async def test_killed_mid_batch_and_restarted_every_mail_arrives_exactly_once(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> None:
    registry = build_registry()
    topics = {name: await kafka_topics(name) for name in
              ("identity.user", "identity.platform", "invitations.invitation")}
    await create_topics(kafka_bootstrap, {"notifications.delivery": 3})
    mx = MailServer()
    async with smtp_server(mx) as port:
        # registered() only needs somewhere to keep the people's keys.
        keys_holder: Any = SimpleNamespace(identity_keys=MemoryKeys())
        people = [registered(keys_holder, address=f"crash{n}@example.org", name=f"N{n}")
                  for n in range(PEOPLE)]
        events = [platform()] + [e for joined, user_id in people for e in (
            joined, envelope(UserSuspended(user_id=user_id, reason="Test",
                                           until=datetime(2031, 1, 1, tzinfo=UTC)),
                             str(user_id)))]
        keys_file = tmp_path / "keys.json"
        keys_file.write_text(json.dumps({s: base64.b64encode(k).decode()
                                         for s, k in keys_holder.identity_keys.keys.items()}))
        publisher = KafkaPublisher(kafka_bootstrap)
        await publisher.start()
        try:
            await publisher.publish([e.to_kafka(topics[registry.topic_of(e.type)])
                                     for e in events])
        finally:
            await publisher.stop()

        env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP": kafka_bootstrap,
               "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
               "USER_TOPIC": topics["identity.user"],
               "PLATFORM_TOPIC": topics["identity.platform"],
               "INVITATION_TOPIC": topics["invitations.invitation"],
               "SEND_LEASE": "2", "RETRY_BASE_DELAY": "0.2", "DELIVERY_POLL_INTERVAL": "0.1",
               "DELIVERY_BATCH": "50", "LOG_LEVEL": "WARNING", "HTTP_PORT": "8003"}
        first_log = tmp_path / "first.log"
        first = await _spawn(first_log, keys_file, env, str(CRASH_AFTER))
        code = await asyncio.wait_for(first.wait(), TIMEOUT)
        assert code == CRASH_EXIT_CODE, first_log.read_text()[-3000:]
        assert len(mx.received) == CRASH_AFTER

        second_log = tmp_path / "second.log"
        second = await _spawn(second_log, keys_file, env)
        try:
            async with asyncio.timeout(TIMEOUT):
                while len(mx.received) < PEOPLE:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3.0)  # a lease longer than that would show a duplicate now
        finally:
            second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), TIMEOUT)
        assert code == 0, second_log.read_text()[-3000:]

    ids = [message["Message-ID"] for message in mx.received]
    assert len(ids) == PEOPLE
    assert len(set(ids)) == PEOPLE
    assert sorted(m["To"] for m in mx.received) == sorted(
        f"crash{n}@example.org" for n in range(PEOPLE))
