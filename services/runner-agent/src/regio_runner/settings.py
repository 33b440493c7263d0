import os

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_RUNNER_", extra="ignore")

    port: int = 8710
    name: str = Field("runner-1", description="This runner's name: its key in the desired and state buckets.")
    address: str = Field("127.0.0.1", description="Where container ports are published, and what heartbeats report.")
    memory_mb: int = Field(default_factory=lambda: host_memory_mb(),
                           description="Memory this runner offers to instances (default: the host's, less a reserve).")
    cpus: float = Field(default_factory=lambda: float(os.cpu_count() or 1),
                        description="CPUs this runner offers to instances (default: the host's).")
    scope: str = Field("", description="Identity of the region installation; labels its containers.")
    labels: dict[str, str] = Field(default_factory=dict, description="Placement labels, e.g. {\"zone\": \"a\"}.")
    region_key: str = Field("", description="Fernet key that opens the sealed release environments.")
    docker_host: str | None = Field(None, description="Docker Engine URL; unset means DOCKER_HOST or the local socket.")
    network: str = Field("regio-apps", description="Docker bridge network the application containers join.")
    heartbeat_seconds: float = Field(2.0, description="Interval of reconcile passes and heartbeats.")
    stop_grace_seconds: int = Field(10, description="Time between SIGTERM and SIGKILL when stopping an instance.")
    meter_period_seconds: int = Field(3600, ge=1, le=86400,
                                      description="Metering period: instances' run time is cut at each period's end "
                                                  "(periods aligned to the epoch) and reported once it has passed.")
    hollow: bool = Field(False, description="For scale tests and benchmarks only: run no containers, pretend to "
                                            "(see regio_runner.hollow). Its heartbeats carry the label hollow=true.")


RESERVED_MB = 1024  # for the engine, the agent and the host itself


def host_memory_mb() -> int:
    """What the host has, as a runner would offer it: MemTotal less a reserve."""
    try:
        with open("/proc/meminfo") as f:
            total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return 4096
    return max(total_kb // 1024 - RESERVED_MB, 256)
