from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_INGRESS_", extra="ignore")

    port: int = 8703
    caddy_admin_url: str = Field("http://127.0.0.1:8719", description="Caddy's admin API, where configs are loaded.")
    http_listen: str = Field("127.0.0.1:8780", description="Where Caddy accepts the applications' traffic.")
    controller_url: str = Field("http://127.0.0.1:8702", description="The controller's internal API: the full route state.")
    resync_seconds: float = Field(10.0, description="How often the route table is compared with the controller and Caddy.")
    dial_timeout: str = "5s"
    read_timeout: str = Field("30s", description="How long an upstream may take to start its response.")
    max_body_bytes: int = 500 * 1024 * 1024

    @property
    def caddy_admin_listen(self) -> str:
        """The admin address kept in every loaded config, so loading never moves the admin endpoint."""
        return urlsplit(self.caddy_admin_url).netloc
