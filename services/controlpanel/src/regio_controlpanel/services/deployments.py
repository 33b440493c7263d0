"""Deployments: requested through the API, advanced by the builder's and controller's events."""
import json
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import nats_auth
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentCancelled,
    DeploymentLogAppended,
    EnvironmentEvent,
    MessageSetAside,
    MessageTooLarge,
    ProvisioningRequested,
    ReleaseCommand,
    RolloutFinished,
    RolloutProgressed,
    RolloutRequested,
    utcnow,
)
from regio_common.outbox import Outbox

from ..db.models import (
    Application,
    Deployment,
    DeploymentLogChunk,
    Environment,
    Region,
    Release,
    Repository,
    Service,
)
from ..domain import deployments as lifecycle
from ..domain.deployments import Status
from ..domain.environments import release_environment, release_port
from ..domain.errors import ApiError, Conflict
from ..domain.service_instances import State as ServiceState
from . import environment_events, lookups, migrations, plan_limits, provisioning, repositories, service_instances
from .access import Action, Caller
from .crypto import Vault
from .domains import hosts_of
from .variables import MAX_ENVIRONMENT_BYTES, environment_bytes, sensitive_names, variables_of

BUILD_MODES = ("AUTO", "FORCE", "ADOPT")


class Deployments:
    def __init__(self, outbox: Outbox, vault: Vault):
        self.outbox = outbox
        self.vault = vault

    # --- requested through the API ----------------------------------------------

    async def request(self, session: AsyncSession, caller: Caller, environment_id: UUID, build_mode: str,
                      redeploy: UUID | None = None, why: str | None = None) -> Deployment:
        """A new deployment of the branch's head, or with ``redeploy`` a new release made from an
        earlier deployment's (its image and environment as they were): a rollback needs no build.
        ``why`` ends the log's first line (e.g. a redeploy at a new size)."""
        environment, app = await lookups.environment(session, caller, environment_id, Action.OPERATE,
                                                     field="environment")
        if build_mode not in BUILD_MODES:
            raise ApiError(f"Choose one of {', '.join(BUILD_MODES)}.", "build_mode")
        source = await self._redeployable(session, environment, redeploy) if redeploy else None
        repository = await session.get(Repository, app.repository_id) if app.repository_id else None
        if source is None and repository is None:
            raise ApiError("The application has no repository to deploy from.", "environment")
        if source is None and repositories.needs_access(repository) and not self.vault.can_seal_for_builders:
            raise ApiError("This region has no build key to send the repository's credentials to its builders.",
                           "environment")
        await migrations.refuse_while_running(session, app.id, "deploy")
        # One request at a time per environment decides what it supersedes.
        await session.execute(select(Environment.id).where(Environment.id == environment.id).with_for_update())
        region = await session.get(Region, app.region_id)
        deployment = Deployment(environment_id=environment.id, build_mode=build_mode, status=Status.QUEUED,
                                percent=0, steps=[], source_deployment_id=source.id if source else None)
        self._record_step(deployment, Status.QUEUED, utcnow())
        session.add(deployment)
        await session.flush()
        await self._supersede_waiting(session, deployment, region)
        if source is not None:
            queued = f"redeploying the release of deployment {source.id} (commit {(source.commit or '?')[:12]})"
        else:
            queued = f"branch {environment.branch} of {repositories.shown_url(repository)}"
        await self._log(session, deployment.id, f"Deployment queued: {queued}{f' {why}' if why else ''}")
        if not await self._provision(session, deployment, region):
            await self._build_or_release(session, deployment, environment, app, region)
        return deployment

    async def cancel(self, session: AsyncSession, deployment: Deployment, reason: str) -> None:
        """Ends it now; the builder and the controller stop their part, and whatever served
        before keeps serving."""
        deployment = await self._locked(session, deployment.id)
        if deployment.status in lifecycle.FINAL:
            raise Conflict(f"The deployment already ended ({deployment.status}).")
        environment = await session.get(Environment, deployment.environment_id)
        app = await session.get(Application, environment.application_id)
        await self._cancel(session, deployment, await region_of(session, deployment, app), reason)

    async def migrate(self, session: AsyncSession, environment: Environment, app: Application, region: Region,
                      release: Release, migration_id: UUID) -> Deployment:
        """A deployment in ``region`` (a migration's target) of the commit ``release`` was built
        from, with the target's copies of the environment's databases and buckets (made by the
        migration: nothing to provision) and without release commands (the schema is copied,
        and the copy is still being written by the source)."""
        repository = await session.get(Repository, app.repository_id) if app.repository_id else None
        if repository is None:
            raise ApiError("The application has no repository to build from.", "application")
        deployment = Deployment(environment_id=environment.id, build_mode="AUTO", status=Status.QUEUED, percent=0,
                                steps=[], region_id=region.id)
        self._record_step(deployment, Status.QUEUED, utcnow())
        session.add(deployment)
        await session.flush()
        await self._log(session, deployment.id, f"Deployment queued: migration {migration_id} to {region.slug}, "
                                                f"commit {release.commit} of branch {environment.branch}")
        self._advance(deployment, Status.PROVISIONING, utcnow())
        await self._log(session, deployment.id, "Provisioning: the migration made the target's databases and buckets")
        access = repositories.access(self.vault, repository)
        await self.outbox.add(session, BuildRequested(
            deployment_id=deployment.id, application_id=app.id, repository_url=repositories.shown_url(repository),
            branch=environment.branch, commit=release.commit, build_mode="AUTO",
            repository_access_sealed=self.vault.seal_for_builders(access, region.slug) if access else None,
        ), region=region.slug)
        return deployment

    async def _redeployable(self, session: AsyncSession, environment: Environment, deployment_id: UUID) -> Deployment:
        source = await session.get(Deployment, deployment_id)
        if source is None or source.environment_id != environment.id:
            raise ApiError("Redeploy a deployment of the same environment.", "redeploy")
        if source.release_id is None:
            raise ApiError("That deployment made no release (its build failed or it was cancelled before).",
                           "redeploy")
        return source

    async def _supersede_waiting(self, session: AsyncSession, newest: Deployment, region: Region) -> None:
        """The oldest unfinished deployment runs on; others still waiting for their rollout are
        superseded by this newest one, so an environment has at most one waiting."""
        unfinished = (await session.execute(
            select(Deployment).where(Deployment.environment_id == newest.environment_id,
                                     Deployment.id != newest.id, Deployment.ended_at.is_(None))
            .order_by(Deployment.created_at).with_for_update())).scalars().all()
        for waiting in unfinished[1:]:
            if waiting.status in lifecycle.WAITING:
                await self._cancel(session, waiting, region, f"superseded by deployment {newest.id}")

    async def _cancel(self, session: AsyncSession, deployment: Deployment, region: Region, reason: str) -> None:
        self._move(deployment, Status.CANCELLED)
        deployment.success = False
        deployment.error = f"Cancelled: {reason}"
        deployment.ended_at = utcnow()
        await self._log(session, deployment.id, f"Deployment cancelled: {reason}. The previous release keeps serving.")
        await self.outbox.add(session, DeploymentCancelled(deployment_id=deployment.id, reason=reason),
                              region=region.slug)

    async def _provision(self, session: AsyncSession, deployment: Deployment, region: Region) -> bool:
        """The environment's services before the build. True when databases or buckets must be
        created first: the provisioning command does it and carries the deployment on."""
        self._advance(deployment, Status.PROVISIONING, utcnow())
        instances = await service_instances.in_use(session, deployment.environment_id)
        if not instances:
            await self._log(session, deployment.id, "Provisioning: no services attached")
            return False
        waiting = [i for i in instances if i.state in (ServiceState.NEW, ServiceState.PROVISIONING)]
        for instance in instances:
            if instance in waiting:
                instance.state = ServiceState.PROVISIONING
                await self._log(session, deployment.id, f"Provisioning: creating {instance.type.lower()} service "
                                                        f"{instance.prefix}")
            else:
                await self._log(session, deployment.id, f"Provisioning: {instance.type.lower()} service "
                                                        f"{instance.prefix} is {instance.state}")
        if waiting:
            await self.outbox.add(session, ProvisioningRequested(deployment_id=deployment.id), region=region.slug)
        return bool(waiting)

    async def on_provisioning_requested(self, session: AsyncSession, message: ProvisioningRequested) -> None:
        """Creates what the deployment's environment waits for, then builds (or releases again).
        A server that refuses fails the deployment with its reason; what runs keeps running."""
        deployment = await self._locked(session, message.deployment_id)
        if deployment is None or deployment.status in lifecycle.FINAL:
            return
        environment = await session.get(Environment, deployment.environment_id)
        app = await session.get(Application, environment.application_id)
        region = await region_of(session, deployment, app)
        for instance in await service_instances.in_use(session, environment.id):
            if instance.state not in (ServiceState.NEW, ServiceState.PROVISIONING):
                continue
            service = await session.get(Service, instance.service_id)
            try:
                credentials = await provisioning.provision(service, provisioning.server_of(service, self.vault),
                                                           instance)
            except provisioning.ProvisioningFailed as e:
                instance.state = ServiceState.NEW  # the next deployment tries again
                await self._fail(session, deployment, f"Provisioning failed: {instance.type.lower()} service "
                                                      f"{instance.prefix}: {e}.")
                return
            instance.credentials_encrypted = self.vault.encrypt(json.dumps(credentials))
            instance.state = ServiceState.ATTACHED
            await self._log(session, deployment.id, f"Provisioning: {instance.type.lower()} service "
                                                    f"{instance.prefix} created on {service.name} and attached")
        await self._build_or_release(session, deployment, environment, app, region)

    async def _build_or_release(self, session: AsyncSession, deployment: Deployment, environment: Environment,
                                app: Application, region: Region) -> None:
        if deployment.source_deployment_id is not None:
            source = await session.get(Deployment, deployment.source_deployment_id)
            await self._release_again(session, deployment, source, environment, app, region)
            return
        repository = await session.get(Repository, app.repository_id)
        access = repositories.access(self.vault, repository)
        await self.outbox.add(session, BuildRequested(
            deployment_id=deployment.id, application_id=app.id, repository_url=repositories.shown_url(repository),
            branch=environment.branch, build_mode="FORCE" if deployment.build_mode == "FORCE" else "AUTO",
            repository_access_sealed=self.vault.seal_for_builders(access, region.slug) if access else None,
        ), region=region.slug)

    async def _release_again(self, session: AsyncSession, deployment: Deployment, source: Deployment,
                             environment: Environment, app: Application, region: Region) -> None:
        old = await session.get(Release, source.release_id)
        release = Release(environment_id=environment.id, image=old.image, commit=old.commit, port=old.port,
                          env_encrypted=old.env_encrypted, env_names=old.env_names,
                          sensitive_names=old.sensitive_names)
        session.add(release)
        await session.flush()
        deployment.commit = old.commit
        deployment.release_id = release.id
        deployment.started_at = utcnow()
        self._advance(deployment, Status.RELEASE, utcnow())
        await self._log(session, deployment.id, f"Release {release.id} made from release {old.id}: image {old.image}, "
                                                f"port {old.port}, {len(old.env_names)} variables as they were")
        await self._request_rollout(session, deployment, environment, app, region, release,
                                    self.vault.decrypt_env(old.env_encrypted))

    # --- advanced by events --------------------------------------------------------

    async def on_log(self, session: AsyncSession, message: DeploymentLogAppended, region: str) -> None:
        """``region``: of the subject the lines came on. Every runner of a region may publish
        there, so lines naming a deployment of another region are dropped, like those of a
        deployment this control panel does not know (deleted since): retrying them would hold
        up every later event of the region."""
        if message.lines and await in_region(session, region, deployment_id=message.deployment_id):
            session.add(DeploymentLogChunk(deployment_id=message.deployment_id, text="\n".join(message.lines) + "\n"))

    async def on_build_started(self, session: AsyncSession, message: BuildStarted) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is not None and self._advance(deployment, Status.BUILD, message.occurred_at):
            deployment.started_at = deployment.started_at or message.occurred_at

    async def on_build_finished(self, session: AsyncSession, message: BuildFinished) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is None or deployment.status in lifecycle.FINAL:
            return
        deployment.started_at = deployment.started_at or message.occurred_at
        deployment.commit = message.commit
        if not message.success:
            await self._fail(session, deployment, f"Build failed: {message.error or 'see the log above'}")
            return
        environment = await session.get(Environment, deployment.environment_id)
        app = await session.get(Application, environment.application_id)
        region = await region_of(session, deployment, app)
        port = release_port(environment.port, message.exposed_port)
        hosts = await hosts_of(session, environment, app, region)
        if deployment.region_id is None:
            services = await service_instances.attached_variables(session, self.vault, environment.id)
        else:  # a migration's, in its target: the target's copies
            services = await migrations.copied_variables(session, self.vault, deployment.id)
        env = release_environment(
            await variables_of(session, self.vault, environment.id), services=services,
            domain=hosts.primary, aliases=hosts.aliases, redirects=hosts.redirects, stage=environment.slug,
            branch=environment.branch,
            secret_key=self.vault.decrypt(environment.secret_key_encrypted), port=port,
        )
        release = Release(environment_id=environment.id, image=message.image, commit=message.commit, port=port,
                          env_encrypted=self.vault.encrypt_env(env), env_names=sorted(env),
                          sensitive_names=sorted(await sensitive_names(session, environment.id)
                                                 | {"SECRET_KEY", *services}))
        session.add(release)
        await session.flush()
        deployment.release_id = release.id
        self._advance(deployment, Status.RELEASE, message.occurred_at)
        await self._log(session, deployment.id,
                        f"Release {release.id} made: image {message.image}, port {port}, {len(env)} variables")
        await self._request_rollout(session, deployment, environment, app, region, release, env)

    async def on_rollout_progressed(self, session: AsyncSession, message: RolloutProgressed) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is not None:
            self._advance(deployment, lifecycle.step_of(message.step), message.occurred_at, message.percent)

    async def on_rollout_finished(self, session: AsyncSession, message: RolloutFinished) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is not None and deployment.status == Status.CANCELLED and message.success:
            # The cancel reached the controller after the routes had moved to the new release:
            # it serves, so the deployment says so rather than claim it was cancelled.
            deployment.status, deployment.percent, deployment.success, deployment.error = Status.SUCCESS, 100, True, None
            deployment.ended_at = message.occurred_at
            await self._log(session, deployment.id, "The cancel came too late: the new release already served, "
                                                    "and it keeps serving.")
            return
        if deployment is None or deployment.status in lifecycle.FINAL:
            return
        if message.success:
            self._move(deployment, Status.SUCCESS)
            deployment.success = True
            deployment.ended_at = message.occurred_at
            await self._log(session, deployment.id, "Deployment succeeded: the new release is serving.")
        else:
            await self._fail(session, deployment, f"Deployment failed: {message.error}")

    async def on_set_aside(self, session: AsyncSession, message: MessageSetAside, region: str) -> None:
        """A message of a deployment was set aside (never published, or never handled): the
        deployment cannot go on, so it fails with the reason. One about an environment alone
        (a scale, new domains) shows among the environment's events.

        ``region``: of the subject the record came on. Only the region's services are believed
        (the subscriber made sure the record's ``service`` is its subject's): a runner agent's
        record could name any deployment, so it is only kept, for ``regio dead-letters``. And a
        service is believed only about its own region's deployments and environments."""
        if message.service not in nats_auth.SERVICES:
            return
        what = (f"a {message.message_kind} message could not be handled by the {message.service} "
                f"({message.consumer})" if message.consumer else
                f"the {message.service} could not send a {message.message_kind} message")
        if message.deployment_id is not None:
            if not await in_region(session, region, deployment_id=message.deployment_id):
                return
            deployment = await self._locked(session, message.deployment_id)
            if deployment is not None and deployment.status not in lifecycle.FINAL:
                await self._fail(session, deployment, f"Deployment failed: {what}: {message.reason}.")
        elif message.environment_id is not None:
            if not await in_region(session, region, environment_id=message.environment_id):
                return
            await environment_events.record(session, EnvironmentEvent(
                id=message.id, environment_id=message.environment_id, occurred_at=message.occurred_at,
                reason="failed", message=f"Not carried out: {what}: {message.reason}."))

    # --- helpers -------------------------------------------------------------------

    async def _request_rollout(self, session: AsyncSession, deployment: Deployment, environment: Environment,
                               app: Application, region: Region, release: Release, env: dict[str, str]) -> None:
        """Routing (hosts, redirects, HTTPS redirect), size (instances, memory) and checks are the
        environment's as they are now; the release (image and variables) is what runs. In a region
        dedicated to one organisation, its instances go only on that organisation's runners.
        An environment above its plan's limits (a plan changed to a smaller one) is scaled down
        to them here, and the log says so."""
        clamped = plan_limits.clamp(await plan_limits.plan_of(session, app), environment)
        if clamped is not None:
            await self._log(session, deployment.id, clamped)
        hosts = await hosts_of(session, environment, app, region)
        try:
            await self.outbox.add(session, RolloutRequested(
                deployment_id=deployment.id, application_id=app.id, environment_id=environment.id,
                release_id=release.id, image=release.image, port=release.port,
                sealed_env=self.vault.seal_for_runners(env, region.slug),
                instances=environment.instances, memory_mb=environment.memory_mb, hosts=hosts.served,
                redirect_hosts=hosts.redirects, https_redirect=environment.https_redirect,
                health_check_path=environment.health_check_path,
                sanity_timeout_seconds=environment.sanity_timeout_seconds,
                # A migration's deployment runs none: the copy of the database is not its own yet.
                release_commands=[] if deployment.region_id else [ReleaseCommand(**c) for c in app.release_commands],
                dedicated_to=region.organisation_id,
            ), region=region.slug)
        except MessageTooLarge as e:
            # Variables set before the API limited them, many injected ones, or many release
            # commands: this release cannot travel, and nothing else of the region waits for it.
            commands = sum(len(c["label"].encode()) + len(c["command"].encode()) for c in app.release_commands)
            await self._fail(session, deployment, f"Release failed: the release's environment is "
                                                  f"{environment_bytes(env)} bytes and its release commands "
                                                  f"{commands} bytes, too big to send to the runners (the rollout "
                                                  f"request would be {e.size} bytes, over the limit of {e.limit}). "
                                                  f"Keep the environment's variables under "
                                                  f"{MAX_ENVIRONMENT_BYTES} bytes.")

    async def _locked(self, session: AsyncSession, deployment_id: UUID) -> Deployment | None:
        # Events of one deployment arrive through several consumers: serialise their updates.
        return (await session.execute(
            select(Deployment).where(Deployment.id == deployment_id).with_for_update())).scalar_one_or_none()

    def _advance(self, deployment: Deployment, to: Status, at: datetime, percent: int | None = None) -> bool:
        if not self._move(deployment, to, percent):
            return False
        self._record_step(deployment, to, at)
        return True

    @staticmethod
    def _record_step(deployment: Deployment, step: Status, at: datetime) -> None:
        """When each step started, from the time the event says it happened (not when it
        arrived here), so the timings show the pipeline, not the messaging."""
        if not deployment.steps or deployment.steps[-1]["step"] != step:
            deployment.steps = [*deployment.steps, {"step": str(step), "at": at.isoformat()}]

    @staticmethod
    def _move(deployment: Deployment, to: Status, percent: int | None = None) -> bool:
        try:
            progress = lifecycle.advance(deployment.status, to, percent)
        except lifecycle.TransitionRefused:
            return False
        deployment.status, deployment.percent = progress.status, progress.percent
        return True

    async def _fail(self, session: AsyncSession, deployment: Deployment, reason: str) -> None:
        self._move(deployment, Status.FAILURE)
        deployment.success = False
        deployment.error = reason
        deployment.ended_at = utcnow()
        await self._log(session, deployment.id, reason + " The previous release keeps serving.")

    async def _log(self, session: AsyncSession, deployment_id: UUID, line: str) -> None:
        session.add(DeploymentLogChunk(deployment_id=deployment_id, text=f"[regio] {line}\n"))


async def in_region(session: AsyncSession, region: str, *, deployment_id: UUID | None = None,
                    environment_id: UUID | None = None) -> bool:
    """Whether the deployment (or the environment) exists and is one of ``region``'s. A
    deployment is its own region's (a migration's, in its target) or its application's."""
    if deployment_id is not None:
        query = (select(Region.slug).select_from(Deployment)
                 .join(Environment, Environment.id == Deployment.environment_id)
                 .join(Application, Application.id == Environment.application_id)
                 .join(Region, Region.id == func.coalesce(Deployment.region_id, Application.region_id))
                 .where(Deployment.id == deployment_id))
    else:
        query = (select(Region.slug).join(Application, Application.region_id == Region.id)
                 .join(Environment, Environment.application_id == Application.id)
                 .where(Environment.id == environment_id))
    return await session.scalar(query) == region


async def region_of(session: AsyncSession, deployment: Deployment, app: Application) -> Region:
    """Where the deployment runs: its own region (a migration's target), else its application's."""
    return await session.get(Region, deployment.region_id or app.region_id)
