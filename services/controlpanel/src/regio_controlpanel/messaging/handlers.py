"""The control panel reads each region's events through one ordered consumer, so a
deployment's log lines, its build result and its rollout result are applied in the
order they were published. The controller's environment events come the same way. The
provisioning commands it sends itself have a consumer of their own."""
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.bus import durable_name
from regio_common.messages import (
    BuildFinished,
    BuildStarted,
    DeploymentLogAppended,
    EnvironmentEvent,
    Message,
    ProvisioningRequested,
    RolloutFinished,
    RolloutProgressed,
    subject_for,
)

from ..services import environment_events
from ..services.deployments import Deployments


def subject(region: str) -> str:
    return f"region.{region}.events.>"


def durable(region: str) -> str:
    return durable_name("controlpanel-events", region)


def provisioning_subject(region: str) -> str:
    return subject_for(ProvisioningRequested, region)


def provisioning_durable(region: str) -> str:
    return durable_name("controlpanel-provisioning", region)


def provisioning_handler(deployments: Deployments):
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, ProvisioningRequested):
            await deployments.on_provisioning_requested(session, message)

    return handle


def dispatcher(deployments: Deployments):
    routes = {
        DeploymentLogAppended: deployments.on_log,
        BuildStarted: deployments.on_build_started,
        BuildFinished: deployments.on_build_finished,
        RolloutProgressed: deployments.on_rollout_progressed,
        RolloutFinished: deployments.on_rollout_finished,
        EnvironmentEvent: environment_events.record,
    }

    async def handle(session: AsyncSession, message: Message) -> None:
        handler = routes.get(type(message))
        if handler is not None:  # other services' events (routes, …) are not ours
            await handler(session, message)

    return handle
