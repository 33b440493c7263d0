"""The runner agent's FastAPI app: the agent's loops run for the life of the app."""
import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from regio_common.app import add_platform_routes
from regio_common.runtime import Runtime

from .agent import Agent
from .api.routes import router
from .db.models import inbox, outbox
from .docker_engine import DockerEngine
from .hollow import HollowEngine, HollowShipper
from .log_shipper import LogShipper
from .settings import Settings

SERVICE = "runner-agent"

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings, outbox, inbox)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.hollow:
            engine = HollowEngine(settings.name, settings.address, settings.network, settings.scope)
            log.warning("RUNNER %s IS HOLLOW: it runs no containers, only pretends to (every instance is "
                        "http://%s:%d, answering 200 to any GET). For scale tests and benchmarks only; "
                        "unset REGIO_RUNNER_HOLLOW for a real runner.", settings.name, settings.address,
                        engine.server.port)
        else:
            engine = DockerEngine(settings.name, settings.address, settings.network, settings.docker_host,
                                  settings.scope)
        shipper: LogShipper | HollowShipper | None = None
        agent: Agent | None = None
        try:
            await runtime.start()
            shipper = (HollowShipper() if settings.hollow
                       else LogShipper(engine, runtime.nc, settings.region, settings.name))
            agent = Agent(settings, engine, runtime.js, runtime.sessions, shipper, runtime.outbox)
            await agent.prepare()
            app.state.runtime = runtime
            app.state.engine = engine
            app.state.agent = agent
            runtime.spawn("desired-watch", agent.watch_desired)
            runtime.spawn("reconcile", agent.run)
            yield
        finally:
            if shipper is not None:
                await shipper.stop()  # while NATS is still connected, to say so in the logs
            if agent is not None:
                try:
                    await agent.say_shipped()
                except Exception as e:  # NATS away: the next agent may ship a few lines again
                    log.warning("could not record how far the logs were shipped: %s", e)
            await runtime.stop()
            engine.close()

    app = FastAPI(title="Regio runner agent", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)

    async def docker() -> None:
        await asyncio.to_thread(app.state.engine.ping)

    add_platform_routes(app, SERVICE, {**runtime.readiness_checks(), "docker": docker})
    return app
