"""The public lookup of an invitation by its code: what the registration page shows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from eventkit.http.problems import NOT_FOUND, Problem
from services.invitations.access import record_viewed
from services.invitations.dependencies import Service
from services.invitations.handlers import InvitationNotFound
from services.invitations.queries import PublicInvitationView, public_view, shown_in_clear
from services.invitations.secrets import is_well_formed_code


def add_lookup_route(router: APIRouter) -> None:
    @router.get("/invitations/lookup")
    async def lookup(
        request: Request, service: Service,
        code: Annotated[str, Query(max_length=200, description="The invitation code.")],
    ) -> PublicInvitationView:
        """Public: what the registration page shows. Unknown and malformed codes look alike.

        Limited per client address across all replicas; a greeting shown is
        recorded as PersonalDataViewed with no actor (whoever holds the code).
        """
        client = request.client.host if request.client is not None else "unknown"
        await service.lookup_limit.check(
            service.store.pool, client_hash=service.handlers.secrets.client_hash(client),
            now=service.clock(),
        )
        unknown = Problem(type_=NOT_FOUND, detail="no invitation has this code")
        if not is_well_formed_code(code):
            raise unknown
        try:
            async with service.store.transaction() as tx:
                view, invitation_id = await public_view(service.handlers, tx, code)
                await record_viewed(
                    tx, service.registry, topic=service.settings.access_topic, actor=None,
                    invitation_id=invitation_id, fields=shown_in_clear(greeting=view.greeting),
                    endpoint="GET /v1/invitations/lookup", purpose="invitation_registration",
                )
                return view
        except InvitationNotFound:
            raise unknown from None
