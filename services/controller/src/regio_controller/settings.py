from pydantic import Field
from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_CONTROLLER_", extra="ignore")

    port: int = 8702
    runner_lost_seconds: float = Field(10.0, description="A runner silent this long gets no new instances.")
    sanity_timeout_seconds: float = Field(
        60.0, description="Sanity test limit when a rollout request does not carry a positive one.")
    instance_start_timeout_seconds: float = Field(
        120.0, description="How long a new instance may take to be reported running before its rollout fails.")
    routes_applied_timeout_seconds: float = Field(
        30.0, description="How long finalizing waits for the ingress to carry the new routes.")
    ingress_urls: list[str] = Field(
        ["http://127.0.0.1:8703"],
        description="The internal APIs of the region's ingresses, asked what is in flight to draining instances.")
    # A request an ingress accepted just before the switch counts against an upstream only once
    # it is proxied there (its headers read, a retry's pause over): this short wait lets such
    # requests arrive before an empty count is believed.
    drain_seconds: float = Field(0.5, description="Least time old instances drain after the routes moved off them.")
    drain_grace_seconds: float = Field(
        30.0, description="Most time old instances drain: requests still in flight then are cut off.")
    traffic_hold_drain_seconds: float = Field(
        10.0, description="How long a held environment's requests in flight to its instances are waited for "
        "before the hold is reported with an error (the ingress holds new requests for at most 30 s).")
    traffic_check_seconds: float = Field(
        0.2, description="How often traffic changes not yet reported in effect, and forwards' ends, are checked.")
    reconcile_seconds: float = Field(2.0, description="Period of the level-triggered reconcile loop.")
    rollout_poll_seconds: float = Field(2.0, description="How often the rollout worker looks for due rollouts.")
    parallel_rollouts: int = Field(
        32, ge=1, description="Rollouts run at once; the others wait their turn, oldest first. Unbounded, a burst "
        "of deploys shares the database connections and the event loop so thinly that rollouts time out waiting "
        "for their own routes.")
