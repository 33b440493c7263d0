"""One build from start to end: clone the branch, reuse or build the image."""
import asyncio
import shutil
import tempfile
from pathlib import Path

from cryptography.fernet import InvalidToken
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.sealing import open_sealed

from ..build import git
from ..build.docker_build import BuildLimits, DockerEngine
from ..build.log import BuildLog
from ..domain.errors import BuildFailed, NoDockerfile, RepositoryUnavailable
from ..domain.states import BuildMode
from ..settings import Settings
from . import builds
from .builds import Outcome

IMAGE_REPOSITORY = "regio-app"


def image_tag(application_id, commit: str) -> str:
    return f"{IMAGE_REPOSITORY}/{application_id}:{commit[:12]}"


class BuildPipeline:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], docker: DockerEngine):
        self.settings = settings
        self.sessions = sessions
        self.docker = docker

    async def run(self, build: Row, build_log: BuildLog) -> Outcome:
        """Never raises for a build that fails: the reason is in the log and the outcome."""
        commit = None
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix=f"build-{build.id}-", dir=self.settings.work_dir))
        try:
            mode = _mode(build.build_mode)
            checkout = workspace / "src"
            wanted = f"commit {build.requested_commit} of branch" if build.requested_commit else "branch"
            build_log.write(f"Cloning {wanted} {build.branch} of {git.display_url(build.repository_url)}")
            commit = await git.clone(build.repository_url, build.branch, checkout,
                                     self.settings.clone_timeout_seconds, build_log.write,
                                     policy=self._policy, access=self._access(build),
                                     known_hosts=self.settings.work_dir / "known_hosts",
                                     commit=build.requested_commit)
            build_log.write(f"Commit {commit}")
            async with self.sessions() as session, session.begin():
                await builds.record_commit(session, build.id, commit)
            if not (checkout / "Dockerfile").is_file():
                raise NoDockerfile(f"there is no Dockerfile at the root of the repository (commit {commit[:12]})")
            if mode is BuildMode.AUTO and (reused := await self._reuse(build, commit, build_log)):
                return reused
            return await self._build(build, commit, checkout, build_log)
        except BuildFailed as e:
            build_log.write(f"Build failed: {e.reason}")
            return Outcome(success=False, commit=commit, error=e.reason)
        finally:
            await asyncio.to_thread(shutil.rmtree, workspace, ignore_errors=True)

    @property
    def _policy(self) -> git.SourcePolicy:
        return git.SourcePolicy(allow_local=self.settings.allow_local_repositories,
                                allow_private_hosts=self.settings.allow_private_repository_hosts)

    def _access(self, build: Row) -> git.Access | None:
        if not build.repository_access_sealed:
            return None
        if not self.settings.build_key:
            raise RepositoryUnavailable("the repository has credentials, but this builder has no build key "
                                        "to open them (REGIO_BUILDER_BUILD_KEY)")
        try:
            opened = open_sealed(self.settings.build_key, build.repository_access_sealed)
        except (InvalidToken, ValueError):
            raise RepositoryUnavailable("the repository's credentials were sealed with another build key") from None
        return git.Access(username=opened.get("username"), password=opened.get("password"),
                          ssh_private_key=opened.get("ssh_private_key"))

    async def _reuse(self, build: Row, commit: str, build_log: BuildLog) -> Outcome | None:
        async with self.sessions() as session, session.begin():
            earlier = await builds.reusable_image(session, build.application_id, commit)
        if earlier is None:
            return None
        image = await self.docker.find_image(earlier)
        if image is None:
            build_log.write(f"The image built earlier from commit {commit[:12]} is gone; building it again")
            return None
        build_log.write(f"Reusing image {image.id} already built from commit {commit[:12]} (build mode AUTO)")
        return Outcome(success=True, commit=commit, image=image.id, exposed_port=image.exposed_port, reused=True)

    async def _build(self, build: Row, commit: str, checkout: Path, build_log: BuildLog) -> Outcome:
        tag = image_tag(build.application_id, commit)
        build_log.write(f"Building image {tag}")
        # The tag names the application and commit. No build labels: the classic builder
        # runs a container per LABEL step, which cost ~0.6 s of every deployment.
        image = await self.docker.build(
            checkout, tag,
            on_line=build_log.write,
            timeout=self.settings.build_timeout_seconds,
            limits=BuildLimits(memory_mb=self.settings.build_memory_mb, cpus=self.settings.build_cpus,
                               cgroup_parent=self.settings.build_cgroup_parent),
        )
        port = f", exposing port {image.exposed_port}" if image.exposed_port else ", exposing no port"
        build_log.write(f"Built image {image.id}{port}")
        return Outcome(success=True, commit=commit, image=image.id, image_tag=tag,
                       exposed_port=image.exposed_port)


def _mode(value: str) -> BuildMode:
    try:
        return BuildMode(value.upper())
    except ValueError:
        raise BuildFailed(f"unknown build mode {value!r}; expected AUTO or FORCE") from None
