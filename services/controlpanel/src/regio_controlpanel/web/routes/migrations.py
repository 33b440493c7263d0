"""Migrating an application to another region from its page, and following the migration:
its steps, the write pause, the DNS changes to make, its log; cancelling it before the cut-over."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from regio_common.app import SessionDep

from ...api.routes.migrations import migration_out
from ...db.models import Environment, MigrationLogChunk, Region
from ...domain.errors import ApiError
from ...domain.migrations import CANCELLABLE, ORDER, Status
from ...services import lookups
from ...services import migrations as service
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep
from ..templating import render

router = APIRouter(prefix="/web", include_in_schema=False)


def percent(status: str) -> int:
    """How far along its steps a migration is (as a deployment's bar shows)."""
    if status not in ORDER:  # failed or cancelled: where it stopped is in its steps
        return 100
    return round(100 * ORDER.index(Status(status)) / (len(ORDER) - 1))


@router.post("/applications/{uuid}/migrate")
async def migrate(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                  region: Annotated[str, Form(max_length=36)] = ""):
    try:
        target_id = UUID(region)
    except ValueError:
        raise ApiError("Choose a region to migrate to.", "region") from None
    # In the path here (a 404 when not visible), where the API has it in the body (a 400).
    app = await lookups.application(session, web.caller, uuid, Action.VIEW)
    migration = await service.request(session, web.caller, app.id, target_id, request.app.state.region_health)
    target = await session.get(Region, migration.target_region_id)
    audit.record(app.organisation_id, "application.migrate", "migration", migration.id,
                 f"Migration of {app.slug} to {target.slug} requested", {"region": target.id})
    service.wake_after_commit(session, request.app.state.migrations.wake)
    return RedirectResponse(f"/web/migrations/{migration.id}", status_code=303)


@router.get("/migrations/{uuid}")
async def migration_page(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep):
    migration, app = await service.visible(session, web.caller, uuid)
    out = await migration_out(session, migration)
    source = await session.get(Region, migration.source_region_id)
    target = await session.get(Region, migration.target_region_id)
    slugs = dict((await session.execute(select(Environment.id, Environment.slug).where(
        Environment.application_id == app.id))).all())
    grant = web.caller.grants.get(app.organisation_id)
    can_cancel = (migration.status in CANCELLABLE and not migration.cancel_requested
                  and grant is not None and grant.allows(Action.MANAGE) and not grant.scoped)
    return render(request, "migration.html", web, migration=migration, out=out, app=app, source=source,
                  target=target, slugs=slugs, percent=percent(migration.status), can_cancel=can_cancel)


@router.get("/migrations/{uuid}/progress")
async def migration_progress(uuid: UUID, session: SessionDep, web: WebCallerDep,
                             offset: Annotated[int, Query(ge=0)] = 0) -> dict:
    """For the page's script (live.js follows it as a deployment's): the state, and the log
    appended after ``offset``."""
    migration, _ = await service.visible(session, web.caller, uuid)
    chunks = (await session.execute(select(MigrationLogChunk.id, MigrationLogChunk.text).where(
        MigrationLogChunk.migration_id == uuid, MigrationLogChunk.id > offset)
        .order_by(MigrationLogChunk.id))).all()
    return {
        "status": migration.status, "percent": percent(migration.status),
        "success": None if migration.ended_at is None else migration.status == Status.SUCCESS,
        "error": migration.error, "ended": migration.ended_at is not None, "commit": None,
        "log": "".join(c.text for c in chunks), "next_offset": chunks[-1].id if chunks else offset,
    }


@router.post("/migrations/{uuid}/cancel")
async def cancel(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                 reason: Annotated[str, Form(max_length=500)] = ""):
    migration, app = await service.visible(session, web.caller, uuid, Action.MANAGE)
    reason = reason.strip() or f"by {web.caller.user.email}"
    await service.cancel(session, migration, reason)
    audit.record(app.organisation_id, "application.migrate.cancel", "migration", migration.id,
                 f"Migration {migration.id} of {app.slug} cancelled", {"reason": reason})
    service.wake_after_commit(session, request.app.state.migrations.wake)
    return RedirectResponse(f"/web/migrations/{migration.id}", status_code=303)
