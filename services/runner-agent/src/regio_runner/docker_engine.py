"""The Docker Engine as one runner agent sees it: only the containers labelled for its runner.

A thin wrapper over the Docker SDK. Every method blocks; the agent calls them in
threads so a slow engine never stalls its heartbeat."""
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from uuid import UUID

import docker
from docker.errors import APIError, NotFound
from docker.types import CancellableStream

from regio_common.runners import ContainerState, DesiredInstance, DesiredJob

log = logging.getLogger(__name__)

LABEL_RUNNER = "regio.runner"
# Which region installation the runner belongs to: two local regions sharing one engine
# (a developer's and a test run's) both have a "runner-1", and must not touch each other's.
LABEL_SCOPE = "regio.scope"
LABEL_INSTANCE = "regio.instance"
LABEL_ENVIRONMENT = "regio.environment"
LABEL_RELEASE = "regio.release"
LABEL_PORT = "regio.port"  # the application's port inside the container, to find its published port
LABEL_JOB = "regio.job"  # marks a one-off job's container (a release command), never an instance
LABEL_DEPLOYMENT = "regio.deployment"
ICC_OPTION = "com.docker.network.bridge.enable_icc"

# Docker's container states in the platform's words. "restarting" never happens with
# restart policy "no"; "paused" is only done by hand and the process still exists.
_STATES = {
    "created": ContainerState.STARTING,
    "restarting": ContainerState.STARTING,
    "running": ContainerState.RUNNING,
    "paused": ContainerState.RUNNING,
    "removing": ContainerState.STOPPING,
    "exited": ContainerState.EXITED,
    "dead": ContainerState.EXITED,
}

PIDS_LIMIT = 1024  # a fork bomb in one application must not take the runner down
# Every capability is dropped, and these few given back: what a typical web application's
# image needs to start, as root, before it serves as whoever it likes.
#   CHOWN, FOWNER, DAC_OVERRIDE: an entrypoint that fixes the owner and mode of its files
#     (a cache or upload directory of the image's app user) and, as root, reads files it
#     does not own;
#   SETUID, SETGID: dropping from root to the app user (gosu, su-exec, nginx and gunicorn
#     workers, Apache's children);
#   NET_BIND_SERVICE: listening on a port below 1024 (nginx on 80) when told to;
#   KILL: a master process signalling its workers once they run as another user.
# Left out of Docker's defaults: NET_RAW (raw sockets: ARP and DNS spoofing of the
# neighbours on the apps network), MKNOD, SYS_CHROOT, SETFCAP, SETPCAP, FSETID, AUDIT_WRITE.
# Never given: NET_ADMIN, SYS_ADMIN, SYS_PTRACE, SYS_MODULE and the like.
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "NET_BIND_SERVICE", "KILL"]
# Each followed output stream holds a connection to the engine for as long as its container
# runs; the pool keeps that many for reuse rather than discarding them as surplus.
MAX_POOL_SIZE = 256


def container_name(instance_id: UUID) -> str:
    return f"regio-{instance_id}"


def job_container_name(job_id: UUID) -> str:
    return f"regio-job-{job_id}"


def instance_labels(runner: str, scope: str, instance: DesiredInstance) -> dict[str, str]:
    """What an instance's container is labelled with: how every later pass recognises it."""
    return {LABEL_RUNNER: runner, LABEL_SCOPE: scope, LABEL_INSTANCE: str(instance.instance_id),
            LABEL_ENVIRONMENT: str(instance.environment_id), LABEL_RELEASE: str(instance.release_id),
            LABEL_PORT: str(instance.port)}


def job_labels(runner: str, scope: str, job: DesiredJob) -> dict[str, str]:
    """What a one-off job's container is labelled with."""
    return {LABEL_RUNNER: runner, LABEL_SCOPE: scope, LABEL_JOB: str(job.job_id),
            LABEL_DEPLOYMENT: str(job.deployment_id), LABEL_ENVIRONMENT: str(job.environment_id),
            LABEL_RELEASE: str(job.release_id)}


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def _timestamp(value: str | None) -> datetime | None:
    # A container that never started reports the zero time.
    if not value or value.startswith("0001-"):
        return None
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class Container:
    """One container labelled for this runner, as the engine last described it."""

    container_id: str
    name: str
    image: str
    labels: dict[str, str]
    state: ContainerState
    exit_code: int | None
    started_at: datetime | None
    host_port: int | None  # the published port of the application's port, while it is published
    finished_at: datetime | None = None  # when its last run ended
    oom_killed: bool = False  # its last run was killed for using more memory than its limit
    memory_mb: int | None = None  # its memory limit, as the engine enforces it

    # The ids are read several times by every pass: parsed once.
    @cached_property
    def instance_id(self) -> UUID | None:
        return _uuid(self.labels.get(LABEL_INSTANCE))

    @cached_property
    def environment_id(self) -> UUID | None:
        return _uuid(self.labels.get(LABEL_ENVIRONMENT))

    @cached_property
    def release_id(self) -> UUID | None:
        return _uuid(self.labels.get(LABEL_RELEASE))

    @cached_property
    def job_id(self) -> UUID | None:
        return _uuid(self.labels.get(LABEL_JOB))

    @property
    def is_job(self) -> bool:
        return LABEL_JOB in self.labels

    @property
    def exit_summary(self) -> str | None:
        """How its run ended, for a person ("exit code 137, out of memory"); None while it runs.
        Docker forgets it when the container is started again: the agent keeps it."""
        if self.state != ContainerState.EXITED or self.exit_code is None:
            return None
        return f"exit code {self.exit_code}" + (", out of memory" if self.oom_killed else "")

    @property
    def key(self) -> str:
        """What the agent serialises work on: the instance, or the container if it has none."""
        instance_id = self.instance_id
        return str(instance_id) if instance_id else self.container_id

    @classmethod
    def from_inspect(cls, attrs: dict) -> "Container":
        labels = attrs["Config"].get("Labels") or {}
        state = attrs["State"]
        status = _STATES.get(state.get("Status", ""), ContainerState.EXITED)
        return cls(
            container_id=attrs["Id"],
            name=attrs["Name"].lstrip("/"),
            image=attrs["Config"].get("Image", ""),
            labels=labels,
            state=status,
            exit_code=state.get("ExitCode") if status == ContainerState.EXITED else None,
            started_at=_timestamp(state.get("StartedAt")),
            host_port=_published_port(attrs, labels.get(LABEL_PORT)),
            finished_at=_timestamp(state.get("FinishedAt")),
            oom_killed=bool(state.get("OOMKilled")),
            memory_mb=((attrs.get("HostConfig") or {}).get("Memory") or 0) // 2 ** 20 or None,
        )

    @classmethod
    def from_summary(cls, summary: dict) -> "Container":
        """The container as the engine's list describes it: without its times or exit code, and
        with its image by id if the image's name has moved on since."""
        labels = summary.get("Labels") or {}
        return cls(
            container_id=summary["Id"],
            name=(summary.get("Names") or ["/"])[0].lstrip("/"),
            image=summary.get("Image", ""),
            labels=labels,
            state=_STATES.get(summary.get("State", ""), ContainerState.EXITED),
            exit_code=None,
            started_at=None,
            host_port=_listed_port(summary, labels.get(LABEL_PORT)),
        )


def _published_port(attrs: dict, port: str | None) -> int | None:
    if not port:
        return None
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in bindings.get(f"{port}/tcp") or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _listed_port(summary: dict, port: str | None) -> int | None:
    if not port:
        return None
    for binding in summary.get("Ports") or []:
        if str(binding.get("PrivatePort")) == port and binding.get("Type") == "tcp" and binding.get("PublicPort"):
            return int(binding["PublicPort"])
    return None


class DockerEngine:
    def __init__(self, runner: str, address: str, network: str, docker_host: str | None = None, scope: str = ""):
        self.runner = runner
        self.scope = scope
        self.address = address
        self.network = network
        self.client = (docker.DockerClient(base_url=docker_host, max_pool_size=MAX_POOL_SIZE) if docker_host
                       else docker.from_env(max_pool_size=MAX_POOL_SIZE))

    def close(self) -> None:
        self.client.close()

    def ping(self) -> None:
        self.client.ping()

    def ensure_network(self) -> None:
        """The bridge network application containers join, created on first use.

        Its containers reach the internet, and nothing else: inter-container communication
        is off, so an instance cannot talk to its neighbours' containers directly (the
        ingress reaches each through its published port on the runner's address). The
        platform's services on the host listen on 127.0.0.1, which the network's gateway
        does not forward to."""
        existing = [n for n in self.client.networks.list(names=[self.network]) if n.name == self.network]
        if existing:
            options = existing[0].attrs.get("Options") or {}
            if options.get(ICC_OPTION, "true") != "false":
                log.warning("docker network %s lets its containers talk to each other; remove it while no "
                            "application runs on it, and the agent creates it anew without", self.network)
            return
        try:
            self.client.networks.create(self.network, driver="bridge", labels={"regio.network": "apps"},
                                        options={ICC_OPTION: "false"})
            log.info("created docker network %s", self.network)
        except APIError as e:
            # Another agent on the same engine may have created it a moment ago.
            if e.status_code != 409:
                raise

    def list(self, starting: Collection[str] = ()) -> list[Container]:
        """Every container labelled for this runner, running or not.

        The engine answers an inspect of a container only once its start is over: the
        instances in ``starting`` (being started by the agent) are described from the list
        alone, so that listing never waits for a start."""
        summaries = self.client.api.containers(all=True, filters={"label": [f"{LABEL_RUNNER}={self.runner}", f"{LABEL_SCOPE}={self.scope}"]})
        containers = []
        for summary in summaries:
            if (summary.get("Labels") or {}).get(LABEL_INSTANCE) in starting:
                containers.append(Container.from_summary(summary))
                continue
            container = self.inspect(summary["Id"])
            if container is not None:
                containers.append(container)
        return containers

    def inspect(self, container_id: str) -> Container | None:
        try:
            attrs = self.client.api.inspect_container(container_id)
        except NotFound:
            return None  # removed between listing and inspecting
        if (attrs["Config"].get("Labels") or {}).get(LABEL_RUNNER) != self.runner:
            return None
        return Container.from_inspect(attrs)

    def run(self, instance: DesiredInstance, env: dict[str, str]) -> str:
        """Create and start the instance's container; returns its id."""
        container = self.client.containers.run(
            instance.image,
            name=container_name(instance.instance_id),
            detach=True,
            environment=env,
            labels=instance_labels(self.runner, self.scope, instance),
            # A random free port on the runner's address; the heartbeat reports which.
            ports={f"{instance.port}/tcp": (self.address, None)},
            **self._confined(instance.memory_mb, instance.cpus),
        )
        return container.id

    def run_job(self, job: DesiredJob, env: dict[str, str]) -> str:
        """Create and start the job's container: its command through ``sh -c``, whatever the
        image's entrypoint, and no published port. Returns its id."""
        container = self.client.containers.run(
            job.image,
            name=job_container_name(job.job_id),
            entrypoint=["/bin/sh", "-c"],
            command=[job.command],
            detach=True,
            environment=env,
            labels=job_labels(self.runner, self.scope, job),
            **self._confined(job.memory_mb, job.cpus),
        )
        return container.id

    def _confined(self, memory_mb: int, cpus: float) -> dict:
        """What every application container runs under: the plan's limits, no privileges, the apps' network.
        (No volume either: the Docker socket, or anything else of the host, is never mounted.)"""
        return dict(
            mem_limit=f"{memory_mb}m",
            # No swap on top: the limit is the memory the plan sells; past it the kernel kills.
            memswap_limit=f"{memory_mb}m",
            nano_cpus=int(cpus * 1e9),
            pids_limit=PIDS_LIMIT,
            privileged=False,
            cap_drop=["ALL"],
            cap_add=CAPABILITIES,
            # No setuid binary or file capability gives a process more than its parent had.
            security_opt=["no-new-privileges:true"],
            network=self.network,
            # The agent restarts exited instances itself, so it can count and pace restarts;
            # jobs are never restarted.
            restart_policy={"Name": "no"},
        )

    def output(self, container_id: str, since: datetime | None, tail: int | str) -> CancellableStream:
        """Follow a container's output, stdout and stderr as Docker recorded them: each item is
        one line (or part of a long one) prefixed with its RFC 3339 timestamp. It ends when
        the container stops; ``close()`` ends it sooner. ``since`` is whole seconds, so
        lines of that second come again."""
        return self.client.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=True,
                                    timestamps=True, tail=tail, since=int(since.timestamp()) if since else None)

    def start(self, container_id: str) -> None:
        self.client.api.start(container_id)

    def kill(self, container_id: str) -> None:
        """SIGKILL, no grace: a job past its timeout."""
        try:
            self.client.api.kill(container_id)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # 409: it is not running any more
                raise

    def remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            pass

    def stop(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM, SIGKILL after the grace period; the container stays (exited) with its times."""
        try:
            self.client.api.stop(container_id, timeout=grace_seconds)
        except NotFound:
            pass

    def stop_and_remove(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM, SIGKILL after the grace period, then remove the container."""
        try:
            self.client.api.stop(container_id, timeout=grace_seconds)
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            pass
