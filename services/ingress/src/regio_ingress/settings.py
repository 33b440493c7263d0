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
    dns_listen: str = Field("127.0.0.1:8753", description="Where the ingress answers Caddy's lookups of "
                            "environments' instances (UDP); Caddy must reach it there.")
    upstreams_refresh_seconds: float = Field(0.2, description="How long Caddy uses a looked-up set of "
                                             "instances before asking again: the delay of a switch.")
    upstreams_grace_seconds: float = Field(3.0, description="After a failed lookup, how long Caddy keeps "
                                           "its last instances before asking again.")
    dial_timeout: str = "5s"
    read_timeout: str = Field("30s", description="How long an upstream may take to start its response.")
    max_body_bytes: int = 500 * 1024 * 1024

    @property
    def caddy_admin_listen(self) -> str:
        """The admin address kept in every loaded config, so loading never moves the admin endpoint."""
        return urlsplit(self.caddy_admin_url).netloc
