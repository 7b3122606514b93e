"""For tests: identity and the audit service side by side on real ports, as the export needs.

Identity reads the person's events from audit's timeline with a token it signs;
audit verifies it against identity's JWKS and opens personal fields with keys
from identity's internal endpoint, as the audit service client. Both over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from fastapi import FastAPI

from eventkit.testing.server import bound_socket, serving
from guestlist.stack.kafka import create_topics
from services.audit.bootstrap import build_app as build_audit_app
from services.audit.settings import AuditSettings
from services.identity.testing import SERVICE_CLIENT, serving_identity

# What the audit service reads here: identity's topics and the invitations topic.
AUDITED_TOPICS = r"^(identity\.(user|platform|access)|invitations\.invitation)$"
AUDIT_ACCESS_TOPIC = "audit.access"


@dataclass(frozen=True, slots=True)
class IdentityWithAudit:
    identity_url: str
    identity: FastAPI
    audit_url: str
    audit: FastAPI


@asynccontextmanager
async def identity_with_audit(
    database_url: str, audit_database_url: str, kafka_bootstrap: str, work_dir: Path,
    *, audited_topics: str = AUDITED_TOPICS, **identity_overrides: Any,
) -> AsyncIterator[IdentityWithAudit]:
    """Identity (``AUDIT_URL`` set) and audit (its own database and group) on free ports."""
    await create_topics(kafka_bootstrap, {AUDIT_ACCESS_TOPIC: 1})
    sock, audit_url = bound_socket()
    client_id, secret = SERVICE_CLIENT
    async with serving_identity(database_url, kafka_bootstrap, audit_url=audit_url,
                                **identity_overrides) as (identity_url, identity):
        audit = build_audit_app(AuditSettings(
            database_url=audit_database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=f"{identity_url}/.well-known/jwks.json",
            audit_identity_url=identity_url, audit_service_client_id=client_id,
            audit_service_client_secret=secret,
            audit_consumer_group=f"audit-{uuid4().hex[:10]}",
            audit_topic_pattern=audited_topics, audit_access_topic=AUDIT_ACCESS_TOPIC,
            audit_signing_key_file=work_dir / "audit-checkpoint-key.pem",
        ))
        async with serving(audit, sock=sock):
            yield IdentityWithAudit(identity_url, identity, audit_url, audit)
