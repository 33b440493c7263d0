"""The sanity test of one new instance: it must be reported running, then answer HTTP.

Divio's rule: any 1xx–4xx or a 500 means the application is up (it answered,
even if with an error page); other 5xx or no answer within the limit fails."""
import asyncio
from dataclasses import dataclass

import httpx

from regio_common.runners import ContainerState, ObservedInstance

from ..db.models import Instance, Release
from ..domain.errors import RolloutFailed
from .context import RolloutContext

PER_TRY_SECONDS = 2.0
# Probes of a booting app come often: until it listens, a probe is refused (or closed by the
# runner's port proxy) at once and costs next to nothing, while every pause between probes is
# time the deployment waits after the app is up. The short backoff only spares an app that
# answers slowly from being asked without a break.
FIRST_RETRY_SECONDS = 0.02
MAX_RETRY_SECONDS = 0.1


def is_alive(status: int) -> bool:
    return 100 <= status < 500 or status == 500


@dataclass(frozen=True)
class Passed:
    instance: Instance
    address: str
    status: int


def _exited(instance: Instance, observed: ObservedInstance) -> RolloutFailed:
    code = "unknown" if observed.exit_code is None else observed.exit_code
    return RolloutFailed(f"sanity test failed: instance {instance.id} on runner {instance.runner} "
                         f"exited with code {code}")


async def wait_until_running(ctx: RolloutContext, instance: Instance) -> str:
    """The instance's address once its runner reports it running."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    limit = ctx.settings.instance_start_timeout_seconds
    while True:
        observed = ctx.registry.observed(instance.id)
        if observed is not None:
            if observed.state == ContainerState.EXITED:
                raise _exited(instance, observed)
            if observed.state == ContainerState.RUNNING and observed.address:
                return observed.address
        waited = loop.time() - started
        # Give the registry one loss interval to hear from the runner after a controller restart.
        if waited > ctx.settings.runner_lost_seconds and ctx.registry.is_lost(instance.runner):
            raise RolloutFailed(f"runner {instance.runner} was lost before instance {instance.id} started")
        if waited >= limit:
            raise RolloutFailed(f"instance {instance.id} was not reported running by runner {instance.runner} "
                                f"within {limit:g}s")
        await ctx.registry.wait_for_change(min(1.0, limit - waited))


async def sanity_test(ctx: RolloutContext, instance: Instance, release: Release, timeout: float) -> Passed:
    address = await wait_until_running(ctx, instance)
    path = release.health_check_path if release.health_check_path.startswith("/") else f"/{release.health_check_path}"
    url = f"http://{address}{path}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    retry = FIRST_RETRY_SECONDS
    while True:
        observed = ctx.registry.observed(instance.id)
        if observed is not None and observed.state == ContainerState.EXITED:
            raise _exited(instance, observed)
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        cut_short = remaining < PER_TRY_SECONDS
        try:
            response = await ctx.http.get(url, timeout=min(PER_TRY_SECONDS, remaining))
        except httpx.HTTPError as e:
            # A probe the deadline cut short proves nothing about the app, so it does not
            # hide the answer an earlier probe got (the 503 is the reason the user needs).
            if not (cut_short and isinstance(e, httpx.TimeoutException) and last.startswith("HTTP")):
                last = f"no answer ({type(e).__name__})"
        else:
            if is_alive(response.status_code):
                return Passed(instance, address, response.status_code)
            last = f"HTTP {response.status_code}"
        await asyncio.sleep(min(retry, max(0.0, deadline - loop.time())))
        retry = min(retry * 2, MAX_RETRY_SECONDS)
    raise RolloutFailed(f"sanity test failed: instance {instance.id} on runner {instance.runner} did not answer "
                        f"GET {path} within {timeout:g}s (last: {last})")
