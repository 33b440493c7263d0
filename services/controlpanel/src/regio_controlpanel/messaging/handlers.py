"""The control panel reads each region's events through one ordered consumer, so a
deployment's log lines, its build result and its rollout result are applied in the
order they were published. The controller's environment events come the same way. The
messages any service of a region set aside (its dead letters) have a consumer of their own,
which fails the region's deployments they belonged to (a runner agent's records are only
kept). The provisioning, backup and restore commands it sends itself have a consumer each,
so a long backup holds up neither deployments nor restores."""
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import dead_letters
from regio_common.bus import COMMANDS, DEAD_LETTERS, EVENTS, durable_name
from regio_common.messages import (
    BackupFilesDeletionRequested,
    BackupRequested,
    BackupRestoreRequested,
    BuildFinished,
    BuildStarted,
    DeploymentLogAppended,
    EnvironmentEvent,
    EnvironmentTrafficChanged,
    InstanceUsageMetered,
    Message,
    MessageSetAside,
    ProvisioningRequested,
    RolloutFinished,
    RolloutProgressed,
    ServiceDataDeletionRequested,
    TrafficMetered,
    subject_for,
)

from ..services import backups as backup_service
from ..services import environment_events, meters, migrations, region_scope, service_instances
from ..services.backups import Backups
from ..services.crypto import Vault
from ..services.deployments import Deployments, in_region

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Message], Awaitable[None]]


def subject(region: str) -> str:
    return f"region.{region}.events.>"


def durable(region: str) -> str:
    return durable_name("controlpanel-events", region)


def usage_subject(region: str) -> str:
    return f"region.{region}.events.usage.>"


def usage_durable(region: str) -> str:
    return durable_name("controlpanel-usage", region)


def usage_handler(region: str) -> Handler:
    """For the consumer of ``region``'s meters, read apart from its other events: hours of
    measurements waiting behind a cut link hold up no deployment (meters.py checks each is
    about the region's own environments)."""
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, InstanceUsageMetered):
            await meters.on_instance_metered(session, message, region)
        elif isinstance(message, TrafficMetered):
            await meters.on_traffic_metered(session, message, region)

    return handle


def dead_letters_durable(region: str) -> str:
    return durable_name("controlpanel-dead-letters", region)


def dead_letters_handler(deployments: Deployments, region: str):
    """For the consumer of ``region``'s dead letters: what they name is checked against it."""
    async def handle(session: AsyncSession, message: Message) -> None:
        if isinstance(message, MessageSetAside):
            await deployments.on_set_aside(session, message, region)

    return handle


@dataclass(frozen=True)
class CommandConsumer:
    """A command the control panel sends itself, read by a durable consumer of its own."""
    name: str  # of the durable consumer: keep it, or the region's pending commands are read again
    command: type[Message]
    handle: Callable[[AsyncSession, Message], Awaitable[None]]

    def subject(self, region: str) -> str:
        return subject_for(self.command, region)

    def durable(self, region: str) -> str:
        return durable_name(f"controlpanel-{self.name}", region)

    def for_region(self, region: str) -> Handler:
        """For the consumer of ``region``'s commands: carried out only for what belongs to
        that region (region_scope: others can write to a region's stream)."""
        async def handle(session: AsyncSession, message: Message) -> None:
            if not isinstance(message, self.command):
                return
            if await region_scope.region_of(session, message) != region:
                log.warning("region %s: %s %s names nothing of the region's: ignored", region, message.kind, message.id)
                return
            await self.handle(session, message)

        return handle


def command_consumers(deployments: Deployments, backups: Backups, vault: Vault) -> list[CommandConsumer]:
    async def delete_data(session: AsyncSession, message: ServiceDataDeletionRequested) -> None:
        await service_instances.on_data_deletion_requested(session, vault, message)

    async def delete_backup_files(session: AsyncSession, message: BackupFilesDeletionRequested) -> None:
        await backup_service.on_files_deletion_requested(session, vault, message)

    return [
        CommandConsumer("provisioning", ProvisioningRequested, deployments.on_provisioning_requested),
        CommandConsumer("service-deletions", ServiceDataDeletionRequested, delete_data),
        CommandConsumer("backups", BackupRequested, backups.on_backup_requested),
        CommandConsumer("restores", BackupRestoreRequested, backups.on_restore_requested),
        CommandConsumer("backup-deletions", BackupFilesDeletionRequested, delete_backup_files),
    ]


def dispatcher(deployments: Deployments, region: str, migrations_changed: Callable[[], None] = lambda: None):
    """For the consumer of ``region``'s events, which only that region's services can publish
    (each region's stream is on its own server). What they say is believed only about that
    region's deployments and environments: a region's builder or controller, a dedicated
    region's included, must not finish another region's build with an image of its choice.
    Deployment log lines, which every runner of the region may publish, likewise. A traffic
    change is believed only from the source region of the migration that asked for it."""
    async def on_log(session: AsyncSession, message: DeploymentLogAppended) -> None:
        await deployments.on_log(session, message, region)

    async def on_traffic_changed(session: AsyncSession, message: EnvironmentTrafficChanged) -> None:
        await migrations.on_traffic_changed(session, message, region)
        migrations_changed()  # the runner looks again (within 50 ms anyway, once this commits)

    async def on_build_finished(session: AsyncSession, message: BuildFinished) -> None:
        await deployments.on_build_finished(session, message)
        await meters.on_build_finished(session, message, region)  # last: the usage ledger's lock waits for commit

    routes = {
        DeploymentLogAppended: on_log,
        BuildStarted: deployments.on_build_started,
        BuildFinished: on_build_finished,
        RolloutProgressed: deployments.on_rollout_progressed,
        RolloutFinished: deployments.on_rollout_finished,
        EnvironmentEvent: environment_events.record,
        EnvironmentTrafficChanged: on_traffic_changed,
    }

    async def handle(session: AsyncSession, message: Message) -> None:
        handler = routes.get(type(message))
        if handler is None:  # other services' events (routes, …) are not ours
            return
        if handler not in (on_log, on_traffic_changed):
            # A deployment is the region's when it runs there (a migration's, in its target,
            # before its environment is); only what names no deployment is checked by environment.
            key = "deployment_id" if getattr(message, "deployment_id", None) is not None else "environment_id"
            named = getattr(message, key, None)
            if named is not None and not await in_region(session, region, **{key: named}):
                # Dropped, as one of a deployment deleted since: retried, it would hold up
                # every later event of the region.
                log.warning("region %s: %s about %s %s, not one of the region's: ignored",
                            region, message.kind, key.removesuffix("_id"), named)
                return
        await handler(session, message)

    return handle


@dataclass(frozen=True)
class Consumer:
    """One durable consumer the control panel keeps on a region's streams."""
    stream: str
    durable: str
    subject: str
    handler: Handler


def region_consumers(deployments: Deployments, commands: list[CommandConsumer], region: str,
                     migrations_changed: Callable[[], None] = lambda: None) -> list[Consumer]:
    """Every consumer the control panel keeps for ``region``: its events, its meters' events, its
    dead letters and the commands the control panel sends itself there."""
    return [
        Consumer(EVENTS.name, durable(region), subject(region), dispatcher(deployments, region, migrations_changed)),
        Consumer(EVENTS.name, usage_durable(region), usage_subject(region), usage_handler(region)),
        Consumer(DEAD_LETTERS.name, dead_letters_durable(region), dead_letters.subject(region),
                 dead_letters_handler(deployments, region)),
        *(Consumer(COMMANDS.name, command.durable(region), command.subject(region), command.for_region(region))
          for command in commands),
    ]
