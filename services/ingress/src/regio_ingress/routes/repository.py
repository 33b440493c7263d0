"""Every query on the route table and the record of loaded configs."""
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import applied_configs, routes
from .route import Route

KEEP_APPLIED_CONFIGS = 1000


def _to_row(route: Route) -> dict:
    data = route.model_dump(mode="json")
    return {"environment_id": route.environment_id, "hosts": data["hosts"], "upstreams": data["upstreams"],
            "revision": route.revision, "redirect_hosts": data["redirect_hosts"],
            "https_redirect": route.https_redirect, "held": route.held}


def _from_row(row) -> Route:
    return Route(environment_id=row.environment_id, hosts=row.hosts, upstreams=row.upstreams, revision=row.revision,
                 redirect_hosts=row.redirect_hosts, https_redirect=row.https_redirect, held=row.held)


class RouteRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def all(self) -> list[Route]:
        rows = await self.session.execute(select(routes).order_by(routes.c.environment_id))
        return [_from_row(row) for row in rows]

    async def all_with_applied(self) -> list[tuple[Route, int | None]]:
        rows = await self.session.execute(select(routes).order_by(routes.c.environment_id))
        return [(_from_row(row), row.applied_revision) for row in rows]

    async def get_with_applied(self, environment_id: UUID) -> tuple[Route | None, int | None]:
        """The held route and the revision of it Caddy carries."""
        row = (await self.session.execute(select(routes).where(routes.c.environment_id == environment_id))).first()
        return (None, None) if row is None else (_from_row(row), row.applied_revision)

    async def save_if_newer(self, route: Route) -> bool:
        """Store ``route`` unless a route of the same or a newer revision is held; True when stored."""
        values = _to_row(route)
        stmt = pg_insert(routes).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[routes.c.environment_id],
            set_={"hosts": stmt.excluded.hosts, "upstreams": stmt.excluded.upstreams,
                  "revision": stmt.excluded.revision, "redirect_hosts": stmt.excluded.redirect_hosts,
                  "https_redirect": stmt.excluded.https_redirect, "held": stmt.excluded.held,
                  "updated_at": func.now()},
            where=routes.c.revision < stmt.excluded.revision,
        ).returning(routes.c.environment_id)
        return (await self.session.execute(stmt)).first() is not None

    async def delete_absent(self, present: Iterable[UUID], changed_before: datetime) -> list[UUID]:
        """Remove routes of environments not in ``present`` that did not change since ``changed_before``
        (a route added by an event after the controller's list was taken stays)."""
        result = await self.session.execute(
            delete(routes)
            .where(routes.c.environment_id.not_in(list(present)), routes.c.updated_at < changed_before)
            .returning(routes.c.environment_id)
        )
        return [row.environment_id for row in result]

    async def mark_applied(self, loaded: Iterable[Route]) -> list[Route]:
        """Record that Caddy carries these revisions; return the ones not announced before."""
        newly: list[Route] = []
        for route in loaded:
            result = await self.session.execute(
                update(routes)
                .where(routes.c.environment_id == route.environment_id, routes.c.revision == route.revision,
                       func.coalesce(routes.c.applied_revision, -1) < route.revision)
                .values(applied_revision=route.revision)
                .returning(routes.c.environment_id)
            )
            if result.first() is not None:
                newly.append(route)
        return newly

    async def record_applied_config(self, config_hash: str) -> None:
        result = await self.session.execute(
            applied_configs.insert().values(config_hash=config_hash).returning(applied_configs.c.id)
        )
        newest = result.scalar_one()
        await self.session.execute(delete(applied_configs).where(applied_configs.c.id <= newest - KEEP_APPLIED_CONFIGS))

    async def database_now(self) -> datetime:
        return (await self.session.execute(select(func.now()))).scalar_one()
