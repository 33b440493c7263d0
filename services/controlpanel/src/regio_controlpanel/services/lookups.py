"""Fetching one object by id for a caller: not found unless the caller may see it, and
refused (403) unless their role allows the action."""
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Application, Environment
from ..domain.errors import ApiError, NotFound
from .access import Action, Caller


async def application(session: AsyncSession, caller: Caller, application_id: UUID, action: Action,
                      field: str | None = None) -> Application:
    app = await session.get(Application, application_id)
    if app is None:
        raise ApiError("Application not found.", field) if field else NotFound()
    caller.require_application(app, action, field)
    return app


async def environment(session: AsyncSession, caller: Caller, environment_id: UUID, action: Action,
                      field: str | None = None) -> tuple[Environment, Application]:
    row = (await session.execute(
        select(Environment, Application).join(Application, Application.id == Environment.application_id)
        .where(Environment.id == environment_id))).first()
    if row is None:
        raise ApiError("Environment not found.", field) if field else NotFound()
    env, app = row
    caller.require_environment(env, app, action, field)
    return env, app
