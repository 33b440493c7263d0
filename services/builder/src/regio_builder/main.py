"""The builder service: consumes BuildRequested, runs builds one at a time, stops those
whose deployment is cancelled, and answers internal queries about them."""
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from regio_common.app import add_platform_routes
from regio_common.runtime import Runtime

from .api.routes import router
from .build.docker_build import DockerEngine
from .db.models import inbox, outbox
from .domain.errors import NotFound
from .messaging import subscribers
from .services.pipeline import BuildPipeline
from .services.worker import BuildWorker
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime("builder", settings, outbox, inbox)
    docker = DockerEngine(settings.docker_host, build_network=settings.build_network)
    checks = {**runtime.readiness_checks(), "docker": docker.ping}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        worker = BuildWorker(
            runtime, BuildPipeline(settings, runtime.sessions, docker),
            poll_seconds=settings.poll_seconds, log_flush_seconds=settings.log_flush_seconds,
        )
        subscribers.subscribe(runtime, worker.wake, worker.check_cancelled)
        runtime.spawn("build worker", worker.run)
        runtime.report_status(checks=checks)  # the region's heartbeat: the control panel's view of it
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="Regio builder", lifespan=lifespan)
    app.state.settings = settings
    app.state.runtime = runtime
    app.include_router(router)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status_code)

    add_platform_routes(app, "builder", checks)
    return app
