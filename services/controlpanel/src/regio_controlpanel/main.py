"""The control panel service: the public API, and the consumer that advances deployments."""
from contextlib import asynccontextmanager

from fastapi import FastAPI

from regio_common.app import add_platform_routes
from regio_common.bus import STATUS_SUBJECTS
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
    invoices,
    logs,
    migrations,
    plans,
    regions,
    services,
    templates,
    tokens,
    usage,
    variables,
)
from .api.routing import operation_id
from .db.models import inbox, outbox
from .messaging import handlers
from .messaging.region_links import RegionLinks
from .services.backups import Backups
from .services.clock import Clock
from .services.crypto import Vault
from .services.deployments import Deployments
from .services.domain_rechecks import DomainRechecks
from .services.invoices import MonthCloser
from .services.migration_runner import MigrationRunner
from .services.region_health import RegionHealth
from .services.storage_sampler import StorageSampler
from .settings import Settings

PUBLIC_ROUTERS = tuple(m.router for m in (
    iam, tokens, regions, applications, environments, variables, domains, deployments, services, backups, logs, templates,
    migrations, plans, invoices, usage))
# Served to anyone: the secret in the path is the authorisation (backup download links).
OPEN_ROUTERS = (downloads.router,)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    # One outbox relay per region, on the region's own link (messaging/region_links.py).
    runtime = Runtime("controlpanel", settings, outbox, inbox, relay=False)
    vault = Vault(settings.secrets_key, settings.region_key, settings.build_key, settings.per_region_sealing)
    deployments_service = Deployments(runtime.outbox, vault)
    backups_service = Backups(runtime.outbox, vault)
    region_health = RegionHealth(settings.status_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        # Made once the runtime has its sessions (start() makes them).
        migration_runner = MigrationRunner(runtime.sessions, runtime.outbox, vault, deployments_service,
                                           backups_service, settings.migration_grace_seconds,
                                           settings.migration_copy_seconds, app.state.clock)
        app.state.migrations = migration_runner
        commands = handlers.command_consumers(deployments_service, backups_service, vault)
        links = RegionLinks(runtime, lambda region: handlers.region_consumers(deployments_service, commands, region,
                                                                              migration_runner.wake),
                            settings.region_refresh_seconds)
        app.state.region_links = links
        await links.refresh()  # served from the first request on
        runtime.spawn("regions", links.run)
        # Heartbeats of every region's services, which cross each region's link to the hub.
        # Few may wait: a region flooding them loses its own, not the connection the others use.
        await runtime.nc.subscribe(STATUS_SUBJECTS, cb=region_health.on_message, pending_msgs_limit=1000,
                                   pending_bytes_limit=8 * 1024 * 1024)
        runtime.spawn("domain rechecks", DomainRechecks(runtime.sessions, runtime.outbox, vault,
                                                        settings.domain_recheck_seconds).run)
        runtime.spawn("migrations", migration_runner.run)
        runtime.spawn("storage samples", StorageSampler(runtime.sessions, vault, app.state.clock,
                                                        settings.storage_sample_seconds).run)
        runtime.spawn("invoices", MonthCloser(runtime.sessions, lambda: app.state.clock.now(),
                                              settings.invoice_delay_seconds, settings.invoice_check_seconds,
                                              settings.billing_currency).run)
        yield
        await links.stop()
        await runtime.stop()

    app = FastAPI(title="Regio Control Panel API", version="3", lifespan=lifespan,
                  description="Divio v3 compatible API of a Regio region.", generate_unique_id_function=operation_id)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.vault = vault
    app.state.deployments = deployments_service
    app.state.backups = backups_service
    app.state.region_health = region_health
    app.state.clock = clock or Clock()  # billing's time: a test sets it (services/clock.py)
    errors.install(app)
    errors.document_errors(app)
    add_platform_routes(app, "controlpanel", runtime.readiness_checks())
    for router in (*PUBLIC_ROUTERS, *OPEN_ROUTERS):
        app.include_router(router)
    web.mount(app)
    return app
