"""``guestlist invitations import FILE.csv`` against the service on a real port."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from schemas.permissions import ROLE_PERMISSIONS
from services.invitations.bootstrap import build_app
from services.invitations.cli import invitations_app
from services.invitations.settings import InvitationsSettings
from services.invitations.testing import INVITATION_TOPIC

pytestmark = pytest.mark.integration


async def test_import_invites_the_good_rows_reports_the_bad_and_never_twice(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path
) -> None:
    await create_topics(kafka_bootstrap, {INVITATION_TOPIC: 3})
    key = SigningKey("cli")
    token = key.mint(sub=str(uuid4()), permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
    run = uuid4().hex[:8]
    file = tmp_path / "people.csv"
    file.write_text(
        "invitee_email,locale,greeting\n"
        f"a-{run}@example.org,de,Hallo\nb-{run}@example.org,,\nnobody,,\n", encoding="utf-8"
    )
    async with serve_jwks(key) as jwks:
        settings = InvitationsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, user_topic=await kafka_topics("identity.user"),
            delivery_topic=await kafka_topics("notifications.delivery"),
        )
        app = build_app(settings)
        async with serving(app) as url:
            args = ["import", str(file), "--url", url, "--token", token]
            first = await asyncio.to_thread(CliRunner().invoke, invitations_app, args)
            second = await asyncio.to_thread(CliRunner().invoke, invitations_app, args)
            invitations = await app.state.invitations.store.pool.fetchval(
                "SELECT count(*) FROM invitations"
            )

    assert first.exit_code == 1, first.output  # one row was refused
    assert "created" in first.output and "row 3: invalid" in first.output
    assert "invitee_email" in first.output
    assert second.output.count("created") == first.output.count("created")
    assert invitations == 2  # the same file again invited nobody twice
