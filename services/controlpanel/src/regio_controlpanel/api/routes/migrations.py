"""Migrating an application to another region (services/migrations.py, services/migration_runner.py)."""
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import Application, Migration, MigrationEnvironment, MigrationLogChunk, Region
from ...domain.deployments import step_timings
from ...domain.migrations import FINAL, Status
from ...services import domains
from ...services import migrations as service
from ...services.access import Action
from ..deps import AuditDep, CallerDep, SessionDep
from ..migration_schemas import (
    DnsChange,
    MigrationCancel,
    MigrationEnvironmentOut,
    MigrationIn,
    MigrationLog,
    MigrationOut,
)
from ..pagination import Page, PageParams, paginate
from ..routing import Router

router = Router(prefix="/apps/v3", tags=["migrations"])


async def migration_out(session: AsyncSession, m: Migration) -> MigrationOut:
    parts = (await session.execute(select(MigrationEnvironment).where(MigrationEnvironment.migration_id == m.id)
                                   .order_by(MigrationEnvironment.id))).scalars().all()
    target = await session.get(Region, m.target_region_id)
    custom = await domains.verified_of_application(session, m.application_id)
    point_to = (target.ingress_address or "").rsplit(":", 1)[0]
    return MigrationOut(
        uuid=m.id, application=m.application_id, source_region=m.source_region_id, target_region=m.target_region_id,
        status=m.status, success=None if m.status not in FINAL else m.status == Status.SUCCESS, error=m.error,
        steps=[{"name": n, "started_at": a, "ended_at": e} for n, a, e in step_timings(m.steps, m.ended_at)],
        environments=[MigrationEnvironmentOut(environment=p.environment_id, deployment=p.deployment_id,
                                              write_pause_ms=p.write_pause_ms) for p in parts],
        write_pause_ms=m.write_pause_ms,
        dns_changes=[DnsChange(domain=d, point_to=point_to) for d in custom] if m.cut_over_at else [],
        cut_over_at=m.cut_over_at, grace_until=m.grace_until, requested_by=m.requested_by,
        created_at=m.created_at, started_at=m.started_at, ended_at=m.ended_at)


@router.post("/application-migrations/", response_model=MigrationOut, status_code=201)
async def create_migration(body: MigrationIn, request: Request, session: SessionDep, caller: CallerDep,
                           audit: AuditDep) -> MigrationOut:
    """Moves the application, every environment and service, to ``region`` while it keeps serving:
    400 when the region is not allowed or lacks a service the application uses, 409 while a
    deployment or another migration of the application runs."""
    migration = await service.request(session, caller, body.application, body.region,
                                      request.app.state.region_health)
    app = await session.get(Application, migration.application_id)
    target = await session.get(Region, migration.target_region_id)
    audit.record(app.organisation_id, "application.migrate", "migration", migration.id,
                 f"Migration of {app.slug} to {target.slug} requested", {"region": target.id})
    service.wake_after_commit(session, request.app.state.migrations.wake)
    return await migration_out(session, migration)


@router.get("/application-migrations/", response_model=Page[MigrationOut])
async def list_migrations(request: Request, session: SessionDep, caller: CallerDep,
                          params: Annotated[PageParams, Depends()], application: UUID | None = None) -> dict:
    query = (select(Migration).join(Application, Application.id == Migration.application_id)
             .where(caller.visible_applications()))
    if application is not None:
        query = query.where(Migration.application_id == application)

    async def serialize(rows):
        return [await migration_out(session, m) for m in rows]

    return await paginate(session, query.order_by(Migration.created_at.desc()), request, params, serialize)


@router.get("/application-migrations/{uuid}/", response_model=MigrationOut)
async def get_migration(uuid: UUID, session: SessionDep, caller: CallerDep) -> MigrationOut:
    migration, _ = await service.visible(session, caller, uuid)
    return await migration_out(session, migration)


@router.get("/application-migrations/{uuid}/logs", response_model=MigrationLog)
async def migration_logs(uuid: UUID, request: Request, session: SessionDep, caller: CallerDep,
                         offset: Annotated[int, Query(ge=0, description="Only chunks after this one.")] = 0
                         ) -> MigrationLog:
    """The whole log, or with ``offset`` what was appended since: poll with ``next_offset`` to follow."""
    migration, _ = await service.visible(session, caller, uuid)
    chunks = (await session.execute(select(MigrationLogChunk.id, MigrationLogChunk.text).where(
        MigrationLogChunk.migration_id == uuid, MigrationLogChunk.id > offset).order_by(MigrationLogChunk.id))).all()
    next_offset = chunks[-1].id if chunks else offset
    return MigrationLog(uuid=uuid, logs="".join(c.text for c in chunks), next_offset=next_offset,
                        next=str(request.url.include_query_params(offset=next_offset)),
                        ended=migration.ended_at is not None)


@router.post("/application-migrations/{uuid}/cancel/", response_model=MigrationOut)
async def cancel_migration(uuid: UUID, body: MigrationCancel, request: Request, session: SessionDep,
                           caller: CallerDep, audit: AuditDep) -> MigrationOut:
    """Stops the migration before its cut-over and undoes it: the application serves from its
    region exactly as before. 409 once the cut-over has begun, or when it already ended."""
    migration, app = await service.visible(session, caller, uuid, Action.MANAGE)
    reason = body.reason.strip() or f"by {caller.user.email}"
    await service.cancel(session, migration, reason)
    audit.record(app.organisation_id, "application.migrate.cancel", "migration", migration.id,
                 f"Migration {migration.id} of {app.slug} cancelled", {"reason": reason})
    service.wake_after_commit(session, request.app.state.migrations.wake)
    return await migration_out(session, migration)
