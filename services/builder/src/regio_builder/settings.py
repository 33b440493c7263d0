from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_BUILDER_", extra="ignore")

    port: int = 8701
