"""Draining old instances once the routes moved off them: they are stopped when no ingress of
the region has a request in flight to them any more, or when the drain grace is over.

A request an ingress proxied to an old instance before the switch runs to its answer (Caddy
keeps counting an upstream its new config dropped until that upstream's last request ends),
so a slow request is answered by the release it started on, as long as it ends within the grace."""
import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from ..db.models import Instance
from ..routes.ingresses import InFlight, Ingresses
from .context import RolloutContext

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
ASK_TIMEOUT_SECONDS = 1.0
# Even the last ask before the grace runs out gets this long: a shorter one fails on a busy
# machine and would report an ingress as unanswering when it merely answered late.
MIN_ASK_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Drained:
    seconds: float
    grace: float
    last: InFlight  # the last answer: idle, or what was left when the grace ran out

    def summary(self) -> str:
        """How the drain ended, for the deployment's log."""
        if self.last.idle:
            return f"Finalizing: old instance(s) drained in {self.seconds:.1f}s, no request left in flight"
        if self.last.unanswered:
            return (f"Finalizing: drain ended at the {self.grace:g}s grace; "
                    f"{len(self.last.unanswered)} ingress(es) could not say what was in flight")
        return (f"Finalizing: drain ended at the {self.grace:g}s grace with {self.last.requests} request(s) "
                "still in flight, which stopping the old instance(s) cuts off")


async def drain(ctx: RolloutContext, deployment_id: UUID | None, instances: Iterable[Instance]) -> Drained:
    """Waits until the ingresses have nothing in flight to ``instances``: at least drain_seconds,
    at most drain_grace_seconds. An ingress that cannot be asked keeps the drain going, since
    what it carries is unknown: if it never answers, the drain lasts the whole grace.
    What it waits for goes to the deployment's log, or (no deployment: the healer drains)
    to the controller's own."""
    settings = ctx.settings
    addresses = {i.address for i in instances if i.address}
    ingresses = Ingresses(ctx.http, settings.ingress_urls, settings.service_token)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + settings.drain_grace_seconds
    await asyncio.sleep(min(settings.drain_seconds, settings.drain_grace_seconds))
    told_unanswered: set[str] = set()
    told_waiting = False
    while True:
        remaining = deadline - loop.time()
        last = await ingresses.in_flight(addresses, timeout=min(ASK_TIMEOUT_SECONDS, max(remaining, MIN_ASK_TIMEOUT_SECONDS)))
        lines = []
        for url, why in last.unanswered.items():
            if url not in told_unanswered:
                told_unanswered.add(url)
                log.warning("ingress %s could not be asked what is in flight: %s", url, why)
                lines.append(f"Finalizing: ingress {url} could not be asked what is in flight ({why}); "
                             f"the old instance(s) drain until it answers, at most {settings.drain_grace_seconds:g}s")
        if last.requests and not told_waiting:
            told_waiting = True
            lines.append(f"Finalizing: waiting for {last.requests} request(s) in flight to the old instance(s), "
                         f"at most {settings.drain_grace_seconds:g}s")
        if lines and deployment_id is None:
            for line in lines:
                log.info("%s", line)
        elif lines:
            async with ctx.sessions() as session, session.begin():
                await ctx.log(session, deployment_id, *lines)
        if last.idle or loop.time() >= deadline:
            return Drained(loop.time() - started, settings.drain_grace_seconds, last)
        await asyncio.sleep(min(POLL_SECONDS, deadline - loop.time()))
