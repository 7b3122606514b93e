"""The audit service's HTTP routes, under /v1/audit: thin, each parses, calls and maps errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from eventkit.http.auth import Principal, require_permission
from eventkit.http.problems import NOT_FOUND, SERVICE_UNAVAILABLE, VALIDATION_ERROR, Problem
from eventkit.personal_data import KeyResolver, KeyUnavailable
from eventkit.runtime import ServiceRuntime
from schemas.access import AuditLogExported, AuditLogQueried
from services.audit import checkpoints, queries, replay
from services.audit.access import actor_uuid, record_access
from services.audit.checkpoints import CheckpointSigner
from services.audit.export import ExportRequest, ExportResult, plan, stream
from services.audit.settings import AuditSettings
from services.audit.verification import RangeError, verify

EVENT_TYPE = r"^guestlist\.[a-z][a-z0-9_]*\.[A-Z][A-Za-z0-9]*\.v[1-9][0-9]*$"
SERVICE = r"^[a-z][a-z0-9_]*$"
EventTypeName = Annotated[str, StringConstraints(pattern=EVENT_TYPE, max_length=200)]
SubjectId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many entries.")]
Cursor = Annotated[str | None, Query(max_length=200, description="From the previous page.")]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """What the routes work with, put on ``app.state.audit`` by the composition root."""

    settings: AuditSettings
    runtime: ServiceRuntime
    signer: CheckpointSigner
    keys: KeyResolver
    replays: replay.ReplayRunner


async def audit_context(request: Request) -> AuditContext:  # async: no worker thread
    context = request.app.state.audit
    assert isinstance(context, AuditContext)
    return context


Context = Annotated[AuditContext, Depends(audit_context)]
Viewer = Annotated[Principal, Depends(require_permission("view_audit_log"))]
Exporter = Annotated[Principal, Depends(require_permission("export_audit_log"))]


def invalid(field: str, message: str) -> Problem:
    return Problem(type_=VALIDATION_ERROR, detail=f"Invalid fields: {field}",
                   errors=[{"field": field, "in": "query", "message": message, "code": "invalid"}])


class ReplayBody(BaseModel):
    """What to replay (log sequence numbers, as for export and verify) and where to."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    first: int | None = Field(default=None, alias="from", ge=1, le=2**62)
    last: int | None = Field(default=None, alias="to", ge=1, le=2**62)
    types: list[EventTypeName] | None = Field(default=None, max_length=100)
    subjects: list[SubjectId] | None = Field(default=None, max_length=1000)
    target_topic: str = Field(max_length=200, description=(
        "Lower-case words joined by dots ending in '.replay'; never a topic the log reads."))


class TimelineItem(BaseModel):
    """One entry of a person's timeline, with its personal fields opened or [erased]."""

    sequence: int = Field(description="The entry's place in the log.")
    id: UUID = Field(description="The event's CloudEvents id (ce_id), as every service has it.")
    time: str = Field(json_schema_extra={"format": "date-time"},
                      description="When the event happened (its ce_time).")
    type: str
    subject: str
    actor: str
    role: Literal["subject", "actor", "named"]
    named_in: list[str] = Field(description="The data fields that name the person.")
    data: Any


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None


def after_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        return queries.decode_cursor(cursor)
    except queries.BadCursor as error:
        raise invalid("cursor", str(error)) from error


async def queried(
    context: AuditContext, principal: Principal, *, endpoint: str, filters: dict[str, str],
    count: int,
) -> None:
    await record_access(
        context.runtime.store,
        AuditLogQueried(actor_id=actor_uuid(principal), endpoint=endpoint, filters=filters,
                        result_count=count),
        topic=context.settings.audit_access_topic, actor=principal.subject,
    )


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1/audit", tags=["audit"])

    @router.get("/checkpoints/key", summary="The public key that signs checkpoints")
    async def checkpoint_key(context: Context) -> dict[str, str]:
        return {
            "algorithm": "Ed25519",
            "key_id": context.signer.key_id,
            "public_key": context.signer.public_key_base64(),
            "public_key_pem": context.signer.public_key_pem(),
        }

    @router.get("/checkpoints/latest", summary="The newest signed checkpoint")
    async def latest_checkpoint(context: Context) -> dict[str, Any]:
        found = await checkpoints.latest(context.runtime.store.pool)
        if found is None:
            raise Problem(type_=NOT_FOUND, detail="no checkpoint has been signed yet")
        return found.as_json()

    @router.get("/events", summary="Log entries, filtered, oldest first")
    async def events(
        context: Context,
        principal: Viewer,
        subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        actor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        type: Annotated[str | None, Query(pattern=EVENT_TYPE, max_length=200)] = None,
        service: Annotated[str | None, Query(pattern=SERVICE, max_length=60)] = None,
        since: Annotated[AwareDatetime | None, Query()] = None,
        until: Annotated[AwareDatetime | None, Query()] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        after = after_cursor(cursor)
        wanted = queries.EventFilter(subject=subject, actor=actor, type=type, service=service,
                                     since=since, until=until)
        page = await queries.find_events(context.runtime.store.pool, wanted, after=after,
                                         limit=limit)
        await queried(context, principal, endpoint="GET /v1/audit/events",
                      filters=wanted.as_text(), count=len(page.items))
        return {"items": page.items, "next_cursor": page.next_cursor}

    @router.get("/subjects/{subject_id}/timeline", response_model=TimelinePage,
                summary="Everything done to or by a person, personal data revealed or [erased]")
    async def subject_timeline(
        context: Context,
        principal: Viewer,
        subject_id: str,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        after = after_cursor(cursor)
        try:
            page = await queries.timeline(context.runtime.store.pool, subject_id, context.keys,
                                          after=after, limit=limit)
        except KeyUnavailable as error:
            raise Problem(type_=SERVICE_UNAVAILABLE, detail="personal-data keys cannot be "
                          "fetched right now", headers={"Retry-After": "5"}) from error
        await queried(context, principal, endpoint="GET /v1/audit/subjects/{subject_id}/timeline",
                      filters={"subject": subject_id}, count=len(page.items))
        return {"items": page.items, "next_cursor": page.next_cursor}

    @router.get("/verify", summary="Recompute the chain and check checkpoint signatures")
    async def verify_log(
        context: Context,
        principal: Viewer,
        first: Annotated[int | None, Query(alias="from", ge=1, le=2**62)] = None,
        last: Annotated[int | None, Query(alias="to", ge=1, le=2**62)] = None,
    ) -> dict[str, Any]:
        try:
            report = await verify(context.runtime.store.pool, context.signer.public_key,
                                  first=first, last=last, dsn=context.settings.database_dsn,
                                  processes=context.settings.verify_processes)
        except RangeError as error:
            raise invalid(error.field, str(error)) from error
        filters = {k: str(v) for k, v in (("from", first), ("to", last)) if v is not None}
        await queried(context, principal, endpoint="GET /v1/audit/verify", filters=filters,
                      count=report.checked)
        return report.as_json()

    @router.post("/replays", status_code=202, summary="Publish a range of the log again")
    async def start_replay(
        context: Context, principal: Exporter, body: ReplayBody, response: Response,
    ) -> dict[str, Any]:
        def bad_body(field: str, message: str) -> Problem:
            return Problem(type_=VALIDATION_ERROR, detail=f"Invalid fields: {field}", errors=[
                {"field": field, "in": "body", "message": message, "code": "invalid"}])

        settings = context.settings
        try:
            replay.check_target(body.target_topic, log_pattern=settings.audit_topic_pattern)
        except replay.TargetError as error:
            raise bad_body("target_topic", str(error)) from error
        try:
            exists = await replay.topic_exists(settings.kafka_bootstrap, body.target_topic)
        except KafkaError as error:
            raise Problem(type_=SERVICE_UNAVAILABLE, detail="Kafka cannot be reached right now",
                          headers={"Retry-After": "5"}) from error
        if not exists:
            raise bad_body("target_topic", "no such topic; create it first")
        request = replay.ReplayRequest(target_topic=body.target_topic, first=body.first,
                                       last=body.last, types=body.types,
                                       subjects=body.subjects)
        try:
            started = await replay.start(
                context.runtime.store, request, replay_id=uuid4(), actor=principal.subject,
                actor_id=actor_uuid(principal), access_topic=settings.audit_access_topic)
        except RangeError as error:
            raise bad_body(error.field, str(error)) from error
        context.replays.start(UUID(started["replay_id"]))
        response.headers["Location"] = f"/v1/audit/replays/{started['replay_id']}"
        return started

    @router.get("/replays/{replay_id}", summary="A replay's progress")
    async def replay_progress(
        context: Context, principal: Exporter, replay_id: UUID
    ) -> dict[str, Any]:
        found = await replay.find(context.runtime.store.pool, replay_id)
        if found is None:
            raise Problem(type_=NOT_FOUND, detail="no such replay")
        return found

    @router.get("/export", summary="Stream a verifiable export, ending with its checkpoint",
                response_class=StreamingResponse)
    async def export_log(
        context: Context,
        principal: Exporter,
        first: Annotated[int | None, Query(alias="from", ge=1, le=2**62)] = None,
        last: Annotated[int | None, Query(alias="to", ge=1, le=2**62)] = None,
        type: Annotated[str | None, Query(pattern=EVENT_TYPE, max_length=200)] = None,
        subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        format: Annotated[Literal["ndjson", "csv"], Query()] = "ndjson",
    ) -> StreamingResponse:
        request = ExportRequest(first=first, last=last, type=type, subject=subject, format=format)
        pool = context.runtime.store.pool
        try:
            start, end, checkpoint = await plan(pool, context.signer, request)
        except RangeError as error:
            raise invalid(error.field, str(error)) from error
        export_id = uuid4()

        async def body() -> AsyncIterator[bytes]:
            result = ExportResult()
            async for chunk in stream(pool, context.signer, request, start, end, checkpoint,
                                      result):
                yield chunk
            await record_access(
                context.runtime.store,
                AuditLogExported(actor_id=actor_uuid(principal), export_id=export_id,
                                 filters=request.filters(), entry_count=result.entries,
                                 export_sha256=result.sha256),
                topic=context.settings.audit_access_topic, actor=principal.subject,
            )

        media = "application/x-ndjson" if format == "ndjson" else "text/csv"
        return StreamingResponse(body(), media_type=media, headers={
            "Content-Disposition": f'attachment; filename="audit-{export_id}.{format}"'})

    return router
