"""The notifications service's HTTP routes, under /v1, for support staff and organizers.

Permissions (schemas/permissions.py): reading the delivery log and previewing
templates needs ``view_platform_logs`` (tech support, developers, QA,
compliance, platform managers); sending a failed mail again changes what
people receive, so it needs ``manage_platform_users`` (platform managers).
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from eventkit.http.auth import Principal, require_permission
from eventkit.http.problems import CONFLICT, NOT_FOUND, VALIDATION_ERROR, Problem
from services.notifications.domain import SUPPORTED_LOCALES, DeliveryStatus, TemplateName
from services.notifications.queries import BadCursor, Delivery, DeliveryLog

LogReader = Annotated[Principal, Depends(require_permission("view_platform_logs"))]
UserManager = Annotated[Principal, Depends(require_permission("manage_platform_users"))]
SupportedLocale = Literal["en", "es", "fr", "uk"]
assert set(SupportedLocale.__args__) == set(SUPPORTED_LOCALES)  # type: ignore[attr-defined]


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None


class TemplateInfo(BaseModel):
    name: TemplateName
    locales: list[str]
    preview: str


class TemplateList(BaseModel):
    items: list[TemplateInfo]


class Preview(BaseModel):
    template: TemplateName
    locale: str
    subject: str
    text: str
    html: str


def build_router(log: DeliveryLog) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notifications"])

    @router.get("/notifications", response_model=DeliveryPage)
    async def list_notifications(
        _reader: LogReader,
        person: Annotated[UUID | None, Query(description="The recipient's user id.")] = None,
        template: TemplateName | None = None,
        status: DeliveryStatus | None = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> DeliveryPage:
        try:
            page, following = await log.deliveries(
                person=person, template=template, status=status, cursor=cursor, limit=limit
            )
        except BadCursor as error:
            raise Problem(type_=VALIDATION_ERROR, detail=str(error),
                          errors=[{"field": "cursor", "message": str(error)}]) from None
        return DeliveryPage(items=page, next_cursor=following)

    @router.get("/notifications/{notification_id}", response_model=Delivery)
    async def get_notification(notification_id: UUID, _reader: LogReader) -> Delivery:
        view = await log.delivery(notification_id)
        if view is None:
            raise Problem(type_=NOT_FOUND, detail="no such notification")
        return view

    @router.post("/notifications/{notification_id}/retry", response_model=Delivery)
    async def retry_notification(notification_id: UUID, _manager: UserManager) -> Delivery:
        outcome = await log.retry(notification_id)
        if outcome is None:
            raise Problem(type_=NOT_FOUND, detail="no such notification")
        if outcome is False or outcome is True:
            raise Problem(type_=CONFLICT, detail="only a failed notification can be retried")
        return outcome

    @router.get("/templates", response_model=TemplateList)
    async def list_templates(_reader: LogReader) -> TemplateList:
        return TemplateList(items=[
            TemplateInfo(name=name, locales=list(SUPPORTED_LOCALES),
                         preview=f"/v1/templates/{name}/preview")
            for name in TemplateName
        ])  # fmt: skip

    @router.get("/templates/{name}/preview", response_model=Preview)
    async def preview_template(
        name: TemplateName,
        _reader: LogReader,
        locale: Annotated[SupportedLocale | None, Query(
            description="Default: the platform's default locale.")] = None,
    ) -> Preview:
        mail = await log.preview(name, locale=locale)
        return Preview(template=name, locale=mail.locale, subject=mail.subject, text=mail.text,
                       html=mail.html)

    return router
