"""The control panel service: the public API, and the consumer that advances deployments."""
from contextlib import asynccontextmanager

from fastapi import FastAPI

from regio_common.app import add_platform_routes
from regio_common.bus import EVENTS
from regio_common.runtime import Runtime

from .api import errors
from .api.routes import applications, deployments, environments, iam, regions
from .db.models import inbox, outbox
from .messaging import handlers
from .services.crypto import Vault
from .services.deployments import Deployments
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime("controlpanel", settings, outbox, inbox)
    vault = Vault(settings.secrets_key, settings.region_key)
    deployments_service = Deployments(runtime.outbox, vault)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        runtime.subscribe(EVENTS.name, handlers.DURABLE, handlers.SUBJECT, handlers.dispatcher(deployments_service))
        yield
        await runtime.stop()

    app = FastAPI(title="Regio Control Panel API", version="3", lifespan=lifespan,
                  description="Divio v3 compatible API of a Regio region.")
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.vault = vault
    app.state.deployments = deployments_service
    errors.install(app)
    add_platform_routes(app, "controlpanel", {"platform": runtime.ready})
    for module in (iam, regions, applications, environments, deployments):
        app.include_router(module.router)
    return app
