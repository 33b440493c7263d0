"""Two loops keep Caddy carrying the route table.

The loader wakes on every change and gives the DNS responder the new table, from which
Caddy looks up each request's host; changes that land while it works are folded into its
next round. Caddy's config does not depend on the table: the loader loads it only when
Caddy runs another. Only once Caddy can no longer be using an older answer does it
announce a revision live, because the controller drains old instances on that word.

The resync takes the controller's full route state every interval (the controller
wins: missed events heal, removed environments go). The Caddy watch reloads Caddy when
it runs something else than what was last loaded (a wiped Caddy; a restarted one resumes
its last config by itself)."""
import asyncio
import logging

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.messages import RoutesApplied
from regio_common.outbox import Outbox

from .caddy.admin import CaddyAdmin, CaddyUnavailable
from .caddy.config import ProxySettings, config_hash, render
from .controller import ControllerClient, ControllerUnavailable
from .dns.table import UpstreamTable
from .dns.upstream_names import UpstreamNames
from .routes.host_index import HostIndex
from .routes.repository import RouteRepository

log = logging.getLogger(__name__)

RETRY_SECONDS = (0.5, 1, 2, 5)
# Beyond the refresh: a lookup answered just before a change is cached from when Caddy read it.
SETTLE_MARGIN_SECONDS = 0.1


class CaddyLoader:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], caddy: CaddyAdmin, table: UpstreamTable,
                 proxy: ProxySettings, outbox: Outbox, settle_seconds: float = 0.05):
        self.sessions = sessions
        self.caddy = caddy
        self.table = table
        self.proxy = proxy
        self.outbox = outbox
        self.settle_seconds = settle_seconds
        self.config = render(proxy)  # the same for every table
        self.names = UpstreamNames()
        self.last_loaded: dict | None = None  # the config Caddy accepted last
        self._config_lost = False  # Caddy runs another config than last_loaded: load even if unchanged
        self._wanted = asyncio.Event()
        self._wanted.set()  # a starting ingress loads its table right away

    def wake(self) -> None:
        self._wanted.set()

    @property
    def hosts(self) -> HostIndex:
        """Which environment each host of the table belongs to."""
        return self.table.hosts

    def reload(self) -> None:
        """Load the config again: Caddy lost it."""
        self._config_lost = True
        self.wake()

    def wake_after_commit(self, session: AsyncSession) -> None:
        """Load once this transaction is committed: earlier, the loader would read the old table."""
        event.listen(session.sync_session, "after_commit", lambda _session: self.wake(), once=True)

    async def ready(self) -> None:
        if self.last_loaded is None:
            raise RuntimeError("no route table loaded into caddy yet")

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self.settle_seconds)  # let a burst of changes land: one load for all
            self._wanted.clear()
            try:
                await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                if isinstance(e, CaddyUnavailable):
                    log.warning("%s; retrying in %ss (the route table is kept)", e, delay)
                else:
                    log.exception("loading the route table failed; retrying in %ss", delay)
                self._wanted.set()
                await asyncio.sleep(delay)
            else:
                failures = 0

    async def load(self) -> None:
        async with self.sessions() as session:
            routes = await RouteRepository(session).all()
        self.table.replace(routes, await self.names.resolve(routes))
        if self.last_loaded is None and not self._config_lost:
            # A restarted ingress finds Caddy running its config still: loading it again would
            # end Caddy's server for nothing, closing kept-alive connections.
            self.last_loaded = await self.caddy.running_config()
        if self.config != self.last_loaded or self._config_lost:
            await self.caddy.load(self.config)
            async with self.sessions() as session, session.begin():
                await RouteRepository(session).record_applied_config(config_hash(self.config))
            # Only now: what watches last_loaded sees the load recorded. (Were the record to fail, the
            # retry loads the same config again, which Caddy takes as a no-op.)
            self.last_loaded = self.config
            self._config_lost = False
            log.info("caddy runs the ingress config %s", config_hash(self.config)[:12])
        # Caddy does not hear of changes: it asks again once its last answer is older than
        # the refresh. Announced any earlier, the controller would drain instances that requests
        # are still sent to.
        settled = max((self.table.settled_at(route.environment_id) for route in routes), default=0.0)
        await asyncio.sleep(max(0.0, settled + SETTLE_MARGIN_SECONDS - self.table.now()))
        async with self.sessions() as session, session.begin():
            for route in await RouteRepository(session).mark_applied(routes):
                await self.outbox.add(session, RoutesApplied(environment_id=route.environment_id,
                                                             revision=route.revision))


class Resync:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], controller: ControllerClient,
                 loader: CaddyLoader, interval: float):
        self.sessions = sessions
        self.controller = controller
        self.loader = loader
        self.interval = interval
        self._controller_down = False  # warn when it goes away and when it is back, not every interval

    async def run(self) -> None:
        while True:
            await self.take_controller_state()
            await asyncio.sleep(self.interval)

    async def take_controller_state(self) -> None:
        async with self.sessions() as session:
            asked_at = await RouteRepository(session).database_now()
        try:
            state = await self.controller.route_state()
        except ControllerUnavailable as e:
            log.log(logging.DEBUG if self._controller_down else logging.WARNING, "%s; serving the last route table", e)
            self._controller_down = True
            return
        if self._controller_down:
            log.info("the controller answers again; taking its route state")
            self._controller_down = False
        async with self.sessions() as session, session.begin():
            repository = RouteRepository(session)
            updated = [route.environment_id for route in state.routes if await repository.save_if_newer(route)]
            removed = await repository.delete_absent(state.environments, asked_at)
        if updated or removed:
            log.info("resync with the controller: %d routes updated, %d removed", len(updated), len(removed))
            self.loader.wake()


class CaddyWatch:
    def __init__(self, caddy: CaddyAdmin, loader: CaddyLoader, interval: float):
        self.caddy = caddy
        self.loader = loader
        self.interval = interval
        self._caddy_down = False  # warn when it goes away, not every interval

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def check(self) -> None:
        if self.loader.last_loaded is None:
            return  # the loader is still trying and will load the table itself
        try:
            running = await self.caddy.running_config()
        except CaddyUnavailable as e:
            log.log(logging.DEBUG if self._caddy_down else logging.WARNING, "%s", e)
            self._caddy_down = True
            return
        self._caddy_down = False
        if running != self.loader.last_loaded:
            log.warning("caddy runs another config than the one last loaded (restarted?); reloading")
            self.loader.reload()
