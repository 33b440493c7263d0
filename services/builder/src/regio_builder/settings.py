import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_BUILDER_", extra="ignore")

    port: int = 8701
    build_timeout_seconds: float = Field(1800, gt=0, description="A docker build running longer fails "
                                                                 "(30 minutes, as on Divio).")
    # Builds run the repository's own code: bounded, so one cannot take the host from the rest.
    build_memory_mb: int = Field(2048, gt=0, description="Memory each step of a docker build may use "
                                                         "(no swap on top); past it the step is killed.")
    build_cpus: float = Field(1.0, gt=0, description="CPUs each step of a docker build may use.")
    build_cgroup_parent: str | None = Field(None, description="Cgroup the build steps' containers are placed "
                                                              "under, whose process limit bounds them (regio up "
                                                              "makes /regio-builds); unset: the Engine's default.")
    build_network: str | None = Field(None, description="Docker network the build steps run on, whose firewall "
                                                        "keeps them off the host's networks (regio up makes "
                                                        "regio-builds); unset: the Engine's default bridge.")
    clone_timeout_seconds: float = Field(300, description="A git clone running longer fails the build.")
    work_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "regio-builder",
        description="Where repositories are cloned for a build; each clone is removed afterwards.",
    )
    docker_host: str | None = Field(None, description="Docker Engine URL; DOCKER_HOST and friends when unset.")
    poll_seconds: float = Field(1.0, description="How often the build worker looks for queued builds "
                                                 "when nothing woke it.")
    log_flush_seconds: float = Field(0.3, description="Longest a build log line waits before it is published.")
    # Off outside a local region: a file:// repository reads the builder host's files (another
    # tenant's checkouts), a private host reaches the builder's networks (metadata, databases).
    allow_local_repositories: bool = Field(False, description="Build from file:// repositories on this host.")
    allow_private_repository_hosts: bool = Field(
        False, description="Build from hosts at loopback, link-local or private addresses.")
    build_key: str = Field("", description="Fernet key opening the repository credentials the control panel "
                                           "seals into build requests.")
