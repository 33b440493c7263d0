"""The controller's FastAPI app."""
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from regio_common.app import add_platform_routes

from .api.internal import router as internal_router
from .controller import Controller
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    controller = Controller(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await controller.start()
        except BaseException:
            await controller.stop()  # whatever had started
            raise
        try:
            yield
        finally:
            await controller.stop()

    app = FastAPI(title="Regio controller", lifespan=lifespan)
    app.state.controller = controller
    app.state.settings = controller.settings
    app.state.runtime = controller.runtime
    app.include_router(internal_router)
    add_platform_routes(app, "controller", controller.runtime.readiness_checks())
    return app
