"""The ingress service: route state in, Caddy config out."""
from contextlib import asynccontextmanager

from fastapi import FastAPI

from regio_common.app import add_platform_routes
from regio_common.bus import EVENTS, durable_name
from regio_common.messages import RoutesChanged, subject_for
from regio_common.runtime import Runtime

from .access_log import AccessLog
from .api import router
from .caddy.admin import CaddyAdmin
from .caddy.config import ProxySettings
from .controller import ControllerClient
from .db.models import inbox, outbox
from .dns.hold import HoldAddress
from .dns.responder import DnsResponder
from .dns.table import UpstreamTable
from .edge import EdgeApp, EdgeServer
from .messaging.routes_changed import CONSUMER, routes_changed_handler
from .metering import TrafficMeter
from .settings import Settings
from .sync import CaddyLoader, CaddyWatch, Resync

SERVICE = "ingress"


def proxy_settings(settings: Settings) -> ProxySettings:
    return ProxySettings(http_listen=settings.http_listen, admin_listen=settings.caddy_admin_listen,
                         https_listen=settings.https_listen or None, http_socket=settings.http_socket or None,
                         https_socket=settings.https_socket or None, tls_issuer=settings.tls_issuer,
                         acme_email=settings.acme_email, acme_directory=settings.acme_directory,
                         access_log_address=settings.access_log_listen or None, edge_address=settings.edge_listen,
                         dial_timeout=settings.dial_timeout, read_timeout=settings.read_timeout,
                         max_body_bytes=settings.max_body_bytes, upstreams_resolver=f"udp/{settings.dns_listen}",
                         upstreams_refresh=f"{round(settings.upstreams_refresh_seconds * 1000)}ms",
                         upstreams_grace=f"{round(settings.upstreams_grace_seconds * 1000)}ms",
                         trusted_forwarders=tuple(settings.trusted_forwarders))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings, outbox, inbox)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        caddy = CaddyAdmin(settings.caddy_admin_socket)
        controller = ControllerClient(settings.controller_url, settings.service_token)
        proxy = proxy_settings(settings)
        # Caddy reaches the ingress where it reaches its edge: the hold address is on that host.
        hold = HoldAddress(settings.edge_listen.rpartition(":")[0].strip("[]"))
        table = UpstreamTable(settings.upstreams_refresh_seconds, settings.upstreams_grace_seconds,
                              settings.edge_listen, proxy.public_ports, hold=hold.address)
        responder = DnsResponder(table, settings.dns_listen)
        edge = EdgeServer(EdgeApp(table), settings.edge_listen)
        await runtime.start()
        await responder.start()
        await edge.start()
        loader = CaddyLoader(runtime.sessions, caddy, table, proxy, runtime.outbox)
        access_log = meter = None
        if settings.access_log_listen:
            # Traffic is metered from the access log: without one, nothing is metered.
            meter = TrafficMeter(runtime.sessions, runtime.outbox, settings.ingress_name, settings.meter_period_seconds,
                                 settings.meter_flush_seconds, settings.meter_close_delay_seconds)
            # Before the first load names this address to Caddy; reads the host index of the table.
            count = meter.count

            def count_traffic(environment_id, timestamp, size) -> None:
                # A forwarded environment's requests are metered where they are served: not twice.
                if environment_id not in loader.hosts.forwarded:
                    count(environment_id, timestamp, size)

            access_log = AccessLog(runtime.nc, settings.region, lambda host: loader.hosts.environment_of(host),
                                   settings.access_log_listen, count_traffic=count_traffic)
            await access_log.start()
            runtime.spawn("traffic meter", meter.run)
        app.state.runtime = runtime
        app.state.caddy = caddy
        app.state.loader = loader
        app.state.meter = meter
        runtime.spawn("caddy loader", loader.run)
        runtime.subscribe(EVENTS.name, durable_name(CONSUMER, settings.region), subject_for(RoutesChanged, settings.region),
                          routes_changed_handler(loader, runtime.outbox))
        runtime.spawn("route resync", Resync(runtime.sessions, controller, loader, settings.resync_seconds).run)
        runtime.spawn("caddy watch", CaddyWatch(caddy, loader, settings.caddy_check_seconds).run)
        runtime.report_status(checks=checks)  # the region's heartbeat: the control panel's view of it
        try:
            yield
        finally:
            if access_log is not None:
                await access_log.stop()  # its last lines go out on the runtime's NATS connection
                await meter.close()  # what it counted, into the database before the engine closes
            await runtime.stop()
            await edge.stop()
            responder.stop()
            hold.close()
            await caddy.close()
            await controller.close()

    app = FastAPI(title="Regio ingress", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)

    async def caddy() -> None:
        await app.state.loader.ready()

    checks = {**runtime.readiness_checks(), "caddy": caddy}
    add_platform_routes(app, SERVICE, checks)
    return app
