"""What the pages show of an environment: its domains, the release it serves, the
deployment under way, and one word for its state. Read with the caller's visibility, as
the API's application and environment bodies are."""
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routes.applications import site_url
from ..db.models import Application, Deployment, Environment, Region, Release
from ..services.access import Caller
from ..services.domains import Hosts, hosts_of


@dataclass
class EnvironmentSummary:
    env: Environment
    url: str
    hosts: Hosts
    serving: Deployment | None  # the last to succeed: its release serves
    release: Release | None
    running: Deployment | None  # under way now
    last: Deployment | None  # the last to end, whatever its outcome

    @property
    def state(self) -> str:
        if self.running is not None:
            return "deploying"
        if self.last is None:
            return "not deployed"
        if self.serving is None:
            return "failed"
        return "serving" if self.last.success else "serving (last deployment failed)"


async def environments_of(session: AsyncSession, caller: Caller, app: Application) -> list[Environment]:
    """A caller scoped to some environments sees only those (as in the API)."""
    return list((await session.execute(
        select(Environment).join(Application, Application.id == Environment.application_id)
        .where(Environment.application_id == app.id, caller.visible_environments())
        .order_by(Environment.created_at))).scalars())


async def summarise(session: AsyncSession, request: Request, app: Application, env: Environment) -> EnvironmentSummary:
    region = await session.get(Region, app.region_id)

    async def newest(*where, order=Deployment.created_at) -> Deployment | None:
        return (await session.execute(select(Deployment).where(Deployment.environment_id == env.id, *where)
                                      .order_by(order.desc()).limit(1))).scalar_one_or_none()

    serving = await newest(Deployment.success.is_(True), order=Deployment.ended_at)
    return EnvironmentSummary(
        env=env, url=site_url(app, env, region), hosts=await hosts_of(session, env, app, region),
        serving=serving, release=await session.get(Release, serving.release_id) if serving else None,
        running=await newest(Deployment.ended_at.is_(None)),
        last=await newest(Deployment.ended_at.is_not(None), order=Deployment.ended_at))


async def summaries(session: AsyncSession, request: Request, caller: Caller,
                    app: Application) -> list[EnvironmentSummary]:
    return [await summarise(session, request, app, e) for e in await environments_of(session, caller, app)]
