"""Application templates: Divio offers starter projects here; Regio offers none. The list
is served, empty, because the divio client reads it before creating an application
(`divio app create`), template or not."""
from uuid import UUID

from pydantic import BaseModel

from ...domain.errors import NotFound
from ..deps import CallerDep
from ..pagination import Page
from ..routing import Router

router = Router(prefix="/apps/v3", tags=["applications"])


class TemplateOut(BaseModel):
    uuid: UUID
    name: str
    url: str


@router.get("/app-templates/", response_model=Page[TemplateOut])
async def templates(caller: CallerDep) -> dict:
    return {"count": 0, "next": None, "previous": None, "results": []}


@router.get("/app-templates/{uuid}/", response_model=TemplateOut)
async def template(uuid: UUID, caller: CallerDep) -> TemplateOut:
    raise NotFound()
