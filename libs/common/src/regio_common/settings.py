"""Settings every service has; each service subclasses with its own env prefix."""
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common settings. A service sets ``model_config`` with its own ``env_prefix``."""

    model_config = SettingsConfigDict(env_prefix="REGIO_", extra="ignore")

    region: str = Field("local", description="Logical region this service works for (used in NATS subjects).")
    database_url: str = Field(
        "postgresql+asyncpg://regio@127.0.0.1:8732/regio",
        description="SQLAlchemy URL; the role may only touch this service's schema.",
    )
    nats_url: str = "nats://127.0.0.1:8722"
    nats_user: str | None = None
    nats_password: str | None = None
    service_token: str = Field("", description="Credential other services present on internal HTTP APIs.")
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "INFO"
    status_seconds: float = Field(5.0, gt=0, le=300,
                                  description="Seconds between the service's heartbeats (region_status).")
