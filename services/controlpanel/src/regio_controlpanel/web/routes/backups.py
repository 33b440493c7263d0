"""Backing up an environment's databases and buckets now, restoring a completed backup into
it, and downloading one. The work is done after the answer (by the control panel's
consumer): the environment's page shows each backup's state."""
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from regio_common.app import SessionDep

from ...domain.backups import DEFAULT_TRIGGER
from ...services import backup_downloads, backups, lookups
from ...services.access import Action
from ..deps import WebAuditDep, WebCallerDep

router = APIRouter(prefix="/web", include_in_schema=False)


def _back(environment_id: UUID) -> RedirectResponse:
    return RedirectResponse(f"/web/environments/{environment_id}#backups", status_code=303)


@router.post("/environments/{uuid}/backups")
async def back_up_now(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    """As POST /apps/v3/backups/ for all the environment's provisioned instances."""
    env, _ = await lookups.environment(session, web.caller, uuid, Action.OPERATE)  # 404 in the path, as every page
    backup, parts, env, app = await request.app.state.backups.request_backup(
        session, web.caller, env.id, None, DEFAULT_TRIGGER, "")
    backups.record_backup(audit, backup, parts, env, app)
    return _back(env.id)


@router.post("/backups/{uuid}/restore")
async def restore_backup(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep,
                         environment: Annotated[UUID | None, Form()] = None):
    """As POST /apps/v3/backup-restores/: every part, into the backup's own environment or
    ``environment`` (the API's rules: one the user may operate, with instances of the same kinds)."""
    await backups.get_backup(session, web.caller, uuid, Action.OPERATE)  # 404 in the path, as every page
    restore, parts, env, app = await request.app.state.backups.request_restore(session, web.caller, uuid, None,
                                                                               environment)
    backups.record_restore(audit, restore, parts, env, app)
    return _back(env.id)


@router.post("/backups/{uuid}/download")
async def download_backup(uuid: UUID, request: Request, session: SessionDep, web: WebCallerDep, audit: WebAuditDep):
    """As POST /apps/v3/backup-downloads/ for every part; the browser is sent on to the link
    (on this host, whatever the region's public URL), which gives the file."""
    await backups.get_backup(session, web.caller, uuid, Action.OPERATE)  # 404 in the path, as every page
    download, backup, env, app = await backup_downloads.create(
        session, web.caller, request.app.state.vault, uuid, None, DEFAULT_TRIGGER)
    backup_downloads.record_created(audit, download, backup, env, app)
    link, _ = backup_downloads.urls("", request.app.state.vault, download)
    return RedirectResponse(link, status_code=303)
