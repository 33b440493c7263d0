"""Use cases on build records. Each runs inside the caller's transaction and puts the
messages it announces in the outbox of that same transaction."""
import logging
import re
from dataclasses import dataclass
from uuid import UUID, uuid4

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import repository_sources
from regio_common.messages import (
    BuildFinished,
    BuildRequested,
    BuildStarted,
    DeploymentLogAppended,
    utcnow,
)
from regio_common.outbox import Outbox

from ..build import git
from ..db import repository
from ..domain.errors import BuildNotFound, InvalidCommit
from ..domain.states import BuildState

log = logging.getLogger(__name__)

# The user information of a URL the parser refuses: it may still hold a token.
USER_INFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


@dataclass(frozen=True)
class Outcome:
    """What a build produced, or why it produced nothing."""

    success: bool
    commit: str | None = None
    image: str | None = None
    image_tag: str | None = None
    exposed_port: int | None = None
    reused: bool = False
    error: str | None = None
    # How long the builder worked on it, by a monotonic clock: the build minutes metered. 0 for
    # a build that ended without running (cancelled or refused before it started).
    build_seconds: float = 0.0


async def record_requested(session: AsyncSession, request: BuildRequested) -> Row | None:
    """Queue the build of a deployment; None when that deployment has one already. A commit
    that is not a commit id is not kept (see ``refuse_invalid_commit``)."""
    return await repository.insert_queued(
        session,
        id=uuid4(),
        deployment_id=request.deployment_id,
        application_id=request.application_id,
        repository_url=request.repository_url,
        branch=request.branch,
        build_mode=request.build_mode,
        requested_commit=_valid_commit(request.commit),
        repository_access_sealed=request.repository_access_sealed,
    )


async def refuse_invalid_commit(session: AsyncSession, outbox: Outbox, build: Row, request: BuildRequested) -> bool:
    """A build asked for a commit that is not a commit id ends failed at once, without running
    (rather than building the branch's head in its place); True then."""
    if request.commit is None:
        return False
    try:
        git.commit_id(request.commit)
    except InvalidCommit as e:
        await append_log(session, outbox, build.deployment_id, build.id, [f"Build failed: {e.reason}"])
        await finish(session, outbox, build, Outcome(success=False, error=e.reason), was=BuildState.QUEUED)
        return True
    return False


def _valid_commit(value: str | None) -> str | None:
    try:
        return git.commit_id(value) if value is not None else None
    except InvalidCommit:
        return None


async def claim_next(session: AsyncSession, outbox: Outbox) -> Row | None:
    """Take the oldest queued build and mark it running; None when the queue is empty."""
    queued = await repository.lock_oldest_queued(session)
    if queued is None:
        return None
    build = await repository.move(session, queued.id, BuildState.RUNNING, started_at=utcnow())
    await outbox.add(session, BuildStarted(deployment_id=build.deployment_id, build_id=build.id))
    return build


async def requeue_interrupted(session: AsyncSession, outbox: Outbox) -> int:
    """Builds a stopped builder left running start again from the beginning."""
    interrupted = await repository.ids_in_state(session, BuildState.RUNNING)
    for build in interrupted:
        await repository.move(session, build.id, BuildState.QUEUED, started_at=None, commit=None)
        await append_log(session, outbox, build.deployment_id, build.id,
                         ["The builder stopped during this build; it will run again."])
    if interrupted:
        log.warning("requeued %d interrupted builds", len(interrupted))
    return len(interrupted)


async def append_log(session: AsyncSession, outbox: Outbox, deployment_id: UUID, build_id: UUID,
                     lines: list[str]) -> None:
    """Keep lines in the build's record and send them to the deployment's log."""
    await repository.append_log(session, build_id, "".join(f"{line}\n" for line in lines))
    await outbox.add(session, DeploymentLogAppended(deployment_id=deployment_id, lines=lines))


async def record_commit(session: AsyncSession, build_id: UUID, commit: str) -> None:
    await repository.set_commit(session, build_id, commit)


async def reusable_image(session: AsyncSession, application_id: UUID, commit: str) -> str | None:
    """The image of an earlier successful build of this application's commit, if any."""
    earlier = await repository.latest_succeeded(session, application_id, commit)
    return earlier.image if earlier else None


async def finish(session: AsyncSession, outbox: Outbox, build: Row, outcome: Outcome,
                 was: BuildState = BuildState.RUNNING) -> None:
    """Ends the build, which must still be in state ``was``, and announces its outcome."""
    state = BuildState.SUCCEEDED if outcome.success else BuildState.FAILED
    finished = await repository.move(
        session, build.id, state, only_from=was,
        finished_at=utcnow(), commit=outcome.commit, image=outcome.image, image_tag=outcome.image_tag,
        exposed_port=outcome.exposed_port, reused=outcome.reused, error=outcome.error,
        # The credentials are kept no longer than they are needed, nor a token the URL held in
        # clear (a build queued before the control panel sealed credentials came with one).
        repository_access_sealed=None, repository_url=_without_secret(build.repository_url),
    )
    if finished is None:  # another builder requeued it meanwhile; that run will announce the result
        log.warning("build %s was no longer %s; its result is dropped", build.id, was)
        return
    await outbox.add(session, BuildFinished(
        deployment_id=build.deployment_id, build_id=build.id, success=outcome.success,
        commit=outcome.commit, image=outcome.image, exposed_port=outcome.exposed_port,
        reused=outcome.reused, error=outcome.error, build_seconds=round(outcome.build_seconds, 3),
    ))


def _without_secret(url: str) -> str:
    """The URL as stored once its build has ended: unchanged unless it held a password or token."""
    try:
        source = repository_sources.parse(url)
    except repository_sources.SourceRefused:
        return USER_INFO.sub(r"\1", url)
    return source.url if source.password is not None else url


async def get(session: AsyncSession, deployment_id: UUID) -> Row:
    build = await repository.by_deployment(session, deployment_id)
    if build is None:
        raise BuildNotFound(f"no build for deployment {deployment_id}")
    return build
