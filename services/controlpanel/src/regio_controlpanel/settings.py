from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_CONTROLPANEL_", extra="ignore")

    port: int = 8700
