"""Backup download links, fetched without credentials: the unguessable token in the path is
the authorisation, until it expires. An unknown or expired token is a plain 404, the same
for both, so a guess learns nothing. Outside the OpenAPI document: the answer is a file,
not JSON (see POST /apps/v3/backup-downloads/)."""
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ...domain.errors import NotFound
from ...services import backup_downloads
from ..deps import SessionDep

router = APIRouter(tags=["downloads"], include_in_schema=False)


async def _answer(request: Request, session: SessionDep, token: str, part: str | None) -> StreamingResponse:
    try:
        part_id = UUID(part) if part is not None else None
    except ValueError as e:
        raise NotFound() from e
    found = await backup_downloads.open_link(session, request.app.state.vault, token, part_id)
    return StreamingResponse(found.chunks(), media_type=found.media_type, headers={
        "Content-Length": str(found.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.filename)}",
        "Cache-Control": "no-store",  # the URL is a secret: no shared cache keeps the file
        "Referrer-Policy": "no-referrer",
    })


@router.get("/downloads/{token}")
async def download_backup(request: Request, token: str, session: SessionDep) -> StreamingResponse:
    """Everything the link was made for: one file, or a tar of several."""
    return await _answer(request, session, token, None)


@router.get("/downloads/{token}/{part}")
async def download_service_instance_backup(request: Request, token: str, part: str,
                                           session: SessionDep) -> StreamingResponse:
    """One service-instance backup of the link."""
    return await _answer(request, session, token, part)
