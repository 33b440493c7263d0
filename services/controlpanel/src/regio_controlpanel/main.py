"""The control panel service: the public API, and the consumer that advances deployments."""
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select

from regio_common import dead_letters
from regio_common.app import add_platform_routes
from regio_common.bus import COMMANDS, DEAD_LETTERS, EVENTS
from regio_common.runtime import Runtime

from . import web
from .api import errors
from .api.routes import (
    applications,
    backups,
    deployments,
    domains,
    downloads,
    environments,
    iam,
    logs,
    regions,
    services,
    tokens,
    variables,
)
from .api.routing import operation_id
from .db.models import Region, inbox, outbox
from .messaging import handlers
from .services.backups import Backups
from .services.crypto import Vault
from .services.deployments import Deployments
from .services.domain_rechecks import DomainRechecks
from .settings import Settings

PUBLIC_ROUTERS = tuple(m.router for m in (
    iam, tokens, regions, applications, environments, variables, domains, deployments, services, backups, logs))
# Served to anyone: the secret in the path is the authorisation (backup download links).
OPEN_ROUTERS = (downloads.router,)


async def known_regions(runtime: Runtime) -> list[str]:
    async with runtime.sessions() as session:
        return list((await session.execute(select(Region.slug))).scalars())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime("controlpanel", settings, outbox, inbox)
    vault = Vault(settings.secrets_key, settings.region_key, settings.build_key, settings.per_region_sealing)
    deployments_service = Deployments(runtime.outbox, vault)
    backups_service = Backups(runtime.outbox, vault)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        commands = handlers.command_consumers(deployments_service, backups_service, vault)
        # One consumer per region this control panel serves. A region added later is
        # picked up at the next start (noted: live region registration is future work).
        for region in {settings.region, *await known_regions(runtime)}:
            runtime.subscribe(EVENTS.name, handlers.durable(region), handlers.subject(region),
                              handlers.dispatcher(deployments_service, region))
            runtime.subscribe(DEAD_LETTERS.name, handlers.dead_letters_durable(region),
                              dead_letters.subject(region), handlers.dead_letters_handler(deployments_service, region))
            for consumer in commands:
                runtime.subscribe(COMMANDS.name, consumer.durable(region), consumer.subject(region), consumer)
        runtime.spawn("domain rechecks", DomainRechecks(runtime.sessions, runtime.outbox, vault,
                                                        settings.domain_recheck_seconds).run)
        yield
        await runtime.stop()

    app = FastAPI(title="Regio Control Panel API", version="3", lifespan=lifespan,
                  description="Divio v3 compatible API of a Regio region.", generate_unique_id_function=operation_id)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.vault = vault
    app.state.deployments = deployments_service
    app.state.backups = backups_service
    errors.install(app)
    errors.document_errors(app)
    add_platform_routes(app, "controlpanel", runtime.readiness_checks())
    for router in (*PUBLIC_ROUTERS, *OPEN_ROUTERS):
        app.include_router(router)
    web.mount(app)
    return app
