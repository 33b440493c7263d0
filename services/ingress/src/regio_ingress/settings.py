import ipaddress
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from regio_common.servers import caddy_admin_listen
from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_INGRESS_", extra="ignore")

    port: int = 8703
    caddy_admin_socket: Path = Field(Path("/var/lib/regio/caddy/admin/admin.sock"),
                                     description="The Unix socket of Caddy's admin API, where configs are loaded "
                                     "(regio_common.servers.caddy_admin_socket: private to Caddy's account).")
    http_listen: str = Field("127.0.0.1:8780", description="Where Caddy accepts the applications' traffic.")
    https_listen: str | None = Field("127.0.0.1:8743", description="Where Caddy accepts it over HTTPS; "
                                     "empty: no HTTPS.")
    http_socket: str | None = Field(None, description="A listening socket Caddy inherits and serves "
                                    "http_listen on (fd/3), from the process that holds it across Caddy's "
                                    "restarts; empty: Caddy binds http_listen itself.")
    https_socket: str | None = Field(None, description="The same for https_listen.")
    tls_issuer: Literal["internal", "acme"] = Field("internal", description="Who signs the domains' "
                                                    "certificates: Caddy's own CA (a local region) or ACME.")
    acme_email: str | None = Field(None, description="The ACME account's contact, for expiry notices.")
    acme_directory: str | None = Field(None, description="The ACME CA's directory URL; empty: Let's Encrypt.")
    access_log_listen: str | None = Field("127.0.0.1:8754", description="Where the ingress receives Caddy's "
                                          "access log (UDP); empty: requests are not logged.")
    caddy_check_seconds: float = Field(1.0, description="How often Caddy's running config is compared "
                                       "with the one last loaded, so a wiped Caddy is reloaded.")
    controller_url: str = Field("http://127.0.0.1:8702", description="The controller's internal API: the full route state.")
    resync_seconds: float = Field(10.0, description="How often the route table is compared with the controller and Caddy.")
    dns_listen: str = Field("127.0.0.1:8753", description="Where the ingress answers Caddy's lookups of "
                            "environments' instances (UDP); Caddy must reach it there.")
    edge_listen: str = Field("127.0.0.1:8755", description="Where the ingress answers the requests Caddy "
                             "sends to no instance (redirects, unknown hosts) and Caddy's certificate asks.")
    upstreams_refresh_seconds: float = Field(0.2, description="How long Caddy uses a looked-up set of "
                                             "instances before asking again: the delay of a switch.")
    upstreams_grace_seconds: float = Field(3.0, description="After a failed lookup, how long Caddy keeps "
                                           "its last instances before asking again.")
    trusted_forwarders: list[str] = Field([], description="Address ranges (CIDR) of the other regions' "
                                          "ingresses: an environment migrated here has its old hosts forwarded "
                                          "from there over HTTP, and their X-Forwarded-Proto is believed, so "
                                          "HTTPS clients are not redirected to HTTPS again.")

    node_name: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
                           description="This ingress node's name: unique in the region, and kept across "
                           "restarts (it names the traffic it meters, with the region: ingress_name).")
    meter_period_seconds: int = Field(3600, ge=1, le=86400, description="The traffic meter's period, aligned "
                                      "to the epoch: requests and bytes are sent per environment and period.")
    meter_flush_seconds: float = Field(2.0, gt=0, le=60, description="How often counted traffic is added to "
                                       "the database: at most what a crashed ingress loses.")
    meter_close_delay_seconds: float = Field(5.0, ge=0, le=600, description="How long after its end a period "
                                             "is sent: access log entries still on their way are counted in it.")

    @field_validator("meter_period_seconds")
    @classmethod
    def _whole_days(cls, seconds: int) -> int:
        # A period never straddles midnight UTC, so never a month's start: the control panel bills
        # each period in the month it starts in.
        if 86400 % seconds:
            raise ValueError("must divide a day (86400 seconds)")
        return seconds

    @field_validator("trusted_forwarders")
    @classmethod
    def _ranges(cls, ranges: list[str]) -> list[str]:
        if len(ranges) > 256:
            raise ValueError("at most 256 ranges")
        return [str(ipaddress.ip_network(r, strict=False)) for r in ranges]

    # Divio's limits, the region's to change.
    dial_timeout: str = Field("5s", description="How long connecting to an instance may take.")
    read_timeout: str = Field("30s", description="How long an instance may take to start its response "
                              "(then 504).")
    max_body_bytes: int = Field(500 * 1024 * 1024, description="The largest request body (then 413).")

    @property
    def ingress_name(self) -> str:
        """The name its metered traffic carries (TrafficMetered.ingress, part of the usage events'
        keys): with the region, so that two regions' nodes of one name (a migration's source and
        target, both metering an environment in one period) never share a key."""
        return f"{self.region}/{self.node_name}"

    @property
    def caddy_admin_listen(self) -> str:
        """The admin address kept in every loaded config, so loading never moves the admin endpoint."""
        return caddy_admin_listen(self.caddy_admin_socket)
