from pydantic import Field
from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_RUNNER_", extra="ignore")

    port: int = 8710
    name: str = Field("runner-1", description="This runner's name: its key in the desired and state buckets.")
    address: str = Field("127.0.0.1", description="Where container ports are published, and what heartbeats report.")
    memory_mb: int = Field(4096, description="Memory this runner offers to instances.")
    cpus: float = Field(2.0, description="CPUs this runner offers to instances.")
    labels: dict[str, str] = Field(default_factory=dict, description="Placement labels, e.g. {\"zone\": \"a\"}.")
    region_key: str = Field("", description="Fernet key that opens the sealed release environments.")
    docker_host: str | None = Field(None, description="Docker Engine URL; unset means DOCKER_HOST or the local socket.")
    network: str = Field("regio-apps", description="Docker bridge network the application containers join.")
    heartbeat_seconds: float = Field(2.0, description="Interval of reconcile passes and heartbeats.")
    stop_grace_seconds: int = Field(10, description="Time between SIGTERM and SIGKILL when stopping an instance.")
