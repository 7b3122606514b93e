"""The identity service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from eventkit.http.app import create_service_app
from eventkit.http.auth import JwksKeySet, TokenVerifier
from eventkit.http.problems import CONFLICT, Problem, problem_body, problem_response
from eventkit.logging import get_logger
from eventkit.personal_data import HttpKeyResolver
from eventkit.runtime import ServiceRuntime, Subscription
from eventkit.store import ConcurrencyError, utc_now
from schemas.catalog import build_registry
from services.identity.account_handlers import AccountHandlers
from services.identity.account_status import DomainError
from services.identity.api import build_jwks_router, build_router
from services.identity.audit_timeline import AuditTimeline
from services.identity.consumers import InvitationCopy
from services.identity.dependencies import IdentityHandlers
from services.identity.derived_keys import DerivedKeys
from services.identity.handlers import UnitOfWork
from services.identity.personal_data_api import build_personal_data_router
from services.identity.personal_data_keys import PersonalDataKeys
from services.identity.policies import LockoutPolicy, ResetMailPolicy
from services.identity.problems import problem_for
from services.identity.reset_request_limit import reset_request_limit
from services.identity.service_clients import OwnKeyReaderToken, ServiceClients
from services.identity.session_handlers import SessionHandlers
from services.identity.settings import IdentitySettings
from services.identity.signing_keys import SigningKeys, TokenMinter

MIGRATIONS = Path(__file__).with_name("migrations")
log = get_logger("identity")


def build_app(settings: IdentitySettings) -> FastAPI:
    keys = DerivedKeys.from_settings(settings)
    registry = build_registry()
    # Both read the runtime's store only once its lifespan has opened it.
    signing_keys = SigningKeys(
        lambda: runtime.store.pool, wrapping_key=keys.signing_key_wrapping,
        rotation=settings.signing_key_rotation, token_ttl=settings.access_token_ttl,
    )
    minter = TokenMinter(signing_keys, issuer=settings.jwt_issuer,
                         audience=settings.jwt_audience, ttl=settings.access_token_ttl)
    audit_client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
    # An invitee's address is sealed under the invitation's key, which invitations keeps.
    invitation_keys = HttpKeyResolver(
        settings.invitations_url, client=audit_client, purpose="invitation_registration",
        credentials=OwnKeyReaderToken(minter, utc_now),
        cache_seconds=settings.personal_data_cache_seconds,
    )
    runtime = ServiceRuntime(
        settings, migrations=[MIGRATIONS],
        subscriptions=[
            Subscription(group=settings.invitations_consumer_group,
                         topics=[settings.invitation_topic],
                         handler=InvitationCopy(registry=registry, keys=keys,
                                                resolver=invitation_keys)),
        ],
    )
    revoked = runtime.revoked_sessions
    work = UnitOfWork(
        store=lambda: runtime.store, registry=registry, keys=keys,
        data_keys=PersonalDataKeys(keys.data_key_wrapping), revoked=revoked, clock=utc_now,
    )
    accounts = AccountHandlers(
        work, confirmation_ttl=settings.confirmation_token_ttl,
        deletion_grace=settings.deletion_grace, deletion_notice_ttl=settings.deletion_notice_ttl,
    )
    sessions = SessionHandlers(
        work, minter=minter,
        policy=LockoutPolicy(settings.lockout_threshold, settings.lockout_window,
                             settings.lockout_duration),
        refresh_ttl=settings.refresh_token_ttl, reset_ttl=settings.password_reset_ttl,
        reset_mails=ResetMailPolicy(settings.reset_mail_limit, settings.reset_mail_window),
        reset_requests=reset_request_limit(settings.reset_request_limit,
                                           settings.reset_request_window),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            if settings.uses_dev_secret:
                log.warning("IDENTITY_SECRET is the local development default; "
                            "set it before serving real people")
            await signing_keys.ensure_current()
            stopping = asyncio.Event()
            task = asyncio.create_task(
                _scheduler(accounts, sessions, signing_keys, settings, stopping)
            )
            try:
                yield
            finally:
                stopping.set()
                await task
                await audit_client.aclose()

    app = create_service_app(
        settings, routers=[build_router(), build_personal_data_router(), build_jwks_router()],
        readiness_checks=runtime.readiness_checks(), lifespan=lifespan, runtime=runtime,
    )
    app.state.identity = IdentityHandlers(
        accounts=accounts, sessions=sessions,
        service_clients=ServiceClients(settings, minter, utc_now),
        password_min_length=settings.password_min_length,
        timeline=AuditTimeline(settings.audit_url, client=audit_client, minter=minter,
                               clock=utc_now),
        export_wait=settings.export_audit_wait,
    )
    app.state.signing_keys = signing_keys
    # Identity verifies its own tokens from its own key table, not over HTTP to itself.
    app.state.token_verifier = TokenVerifier(
        _local_key_set(signing_keys, settings), issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, revoked=revoked,
    )
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(ConcurrencyError, _on_concurrency_error)
    return app


def _local_key_set(signing_keys: SigningKeys, settings: IdentitySettings) -> JwksKeySet:
    async def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=await signing_keys.jwks())

    return JwksKeySet(
        "http://identity.internal/.well-known/jwks.json",
        client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
        cache_seconds=settings.jwks_cache_seconds, refetch_interval_seconds=1.0,
    )


async def _scheduler(
    accounts: AccountHandlers, sessions: SessionHandlers, signing_keys: SigningKeys,
    settings: IdentitySettings, stopping: asyncio.Event,
) -> None:
    """Timed reactivations, requested deletions, reset requests, expired delivery keys and
    signing-key rotation, safe with two replicas."""
    ticks = 0
    while not stopping.is_set():
        try:
            await accounts.run_due_work()
            await sessions.run_due_work()
            ticks += 1
            if ticks % 60 == 0:
                await signing_keys.ensure_current()
        except Exception as error:  # one bad tick must not stop the schedule
            log.warning("scheduled work failed", error=repr(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=settings.scheduler_interval)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return _render(request, problem_for(exc))


async def _on_concurrency_error(request: Request, _exc: Exception) -> JSONResponse:
    return _render(request, Problem(
        type_=CONFLICT, detail="the account changed meanwhile; retry", headers={"Retry-After": "1"}
    ))


def _render(request: Request, problem: Problem) -> JSONResponse:
    body = problem_body(
        request, type_uri=problem.problem_type.uri, title=problem.title, status=problem.status,
        detail=problem.detail, extra=problem.extra,
    )
    return problem_response(body, headers=problem.headers)
