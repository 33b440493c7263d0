"""Deployments: requested through the API, advanced by the builder's and controller's events."""
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentLogAppended,
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
)
from ..domain import deployments as lifecycle
from ..domain.deployments import Status
from ..domain.environments import release_environment, release_port
from ..domain.errors import ApiError
from . import lookups
from .access import Action, Caller
from .crypto import Vault
from .domains import hosts_of
from .variables import sensitive_names, variables_of

BUILD_MODES = ("AUTO", "FORCE", "ADOPT")


class Deployments:
    def __init__(self, outbox: Outbox, vault: Vault):
        self.outbox = outbox
        self.vault = vault

    # --- requested through the API ----------------------------------------------

    async def request(self, session: AsyncSession, caller: Caller, environment_id: UUID, build_mode: str) -> Deployment:
        environment, app = await lookups.environment(session, caller, environment_id, Action.OPERATE,
                                                     field="environment")
        if build_mode not in BUILD_MODES:
            raise ApiError(f"Choose one of {', '.join(BUILD_MODES)}.", "build_mode")
        repository = await session.get(Repository, app.repository_id) if app.repository_id else None
        if repository is None:
            raise ApiError("The application has no repository to deploy from.", "environment")
        region = await session.get(Region, app.region_id)
        deployment = Deployment(environment_id=environment.id, build_mode=build_mode, status=Status.QUEUED,
                                percent=0)
        session.add(deployment)
        await session.flush()
        await self._log(session, deployment.id, f"Deployment queued: branch {environment.branch} of {repository.url}")
        await self.outbox.add(session, BuildRequested(
            deployment_id=deployment.id, application_id=app.id, repository_url=repository.url,
            branch=environment.branch, build_mode="FORCE" if build_mode == "FORCE" else "AUTO",
        ), region=region.slug)
        return deployment

    # --- advanced by events --------------------------------------------------------

    async def on_log(self, session: AsyncSession, message: DeploymentLogAppended) -> None:
        # Lines of a deployment this control panel does not know (deleted since) are dropped:
        # retrying them would hold up every later event of the region.
        if message.lines and await session.get(Deployment, message.deployment_id) is not None:
            session.add(DeploymentLogChunk(deployment_id=message.deployment_id, text="\n".join(message.lines) + "\n"))

    async def on_build_started(self, session: AsyncSession, message: BuildStarted) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is not None and self._move(deployment, Status.BUILD):
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
        region = await session.get(Region, app.region_id)
        port = release_port(environment.port, message.exposed_port)
        hosts = await hosts_of(session, environment, app, region)
        env = release_environment(
            await variables_of(session, self.vault, environment.id),
            domain=hosts.primary, aliases=hosts.aliases, redirects=hosts.redirects, stage=environment.slug,
            branch=environment.branch,
            secret_key=self.vault.decrypt(environment.secret_key_encrypted), port=port,
        )
        release = Release(environment_id=environment.id, image=message.image, commit=message.commit, port=port,
                          env_encrypted=self.vault.encrypt_env(env), env_names=sorted(env),
                          sensitive_names=sorted(await sensitive_names(session, environment.id) | {"SECRET_KEY"}))
        session.add(release)
        await session.flush()
        deployment.release_id = release.id
        self._move(deployment, Status.RELEASE)
        await self._log(session, deployment.id,
                        f"Release {release.id} made: image {message.image}, port {port}, {len(env)} variables")
        await self.outbox.add(session, RolloutRequested(
            deployment_id=deployment.id, application_id=app.id, environment_id=environment.id,
            release_id=release.id, image=message.image, port=port, sealed_env=self.vault.seal_for_runners(env),
            instances=environment.instances, memory_mb=environment.memory_mb, hosts=hosts.served,
            health_check_path=environment.health_check_path,
        ), region=region.slug)

    async def on_rollout_progressed(self, session: AsyncSession, message: RolloutProgressed) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is not None:
            self._move(deployment, lifecycle.step_of(message.step), message.percent)

    async def on_rollout_finished(self, session: AsyncSession, message: RolloutFinished) -> None:
        deployment = await self._locked(session, message.deployment_id)
        if deployment is None or deployment.status in lifecycle.FINAL:
            return
        if message.success:
            self._move(deployment, Status.SUCCESS)
            deployment.success = True
            deployment.ended_at = utcnow()
            await self._log(session, deployment.id, "Deployment succeeded: the new release is serving.")
        else:
            await self._fail(session, deployment, f"Deployment failed: {message.error}")

    # --- helpers -------------------------------------------------------------------

    async def _locked(self, session: AsyncSession, deployment_id: UUID) -> Deployment | None:
        # Events of one deployment arrive through several consumers: serialise their updates.
        return (await session.execute(
            select(Deployment).where(Deployment.id == deployment_id).with_for_update())).scalar_one_or_none()

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
