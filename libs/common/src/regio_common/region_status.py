"""A region service's heartbeat: whether it is ready, and a few figures about it.

Builder, controller and ingress of every region publish one on core NATS (not JetStream:
only the newest matters, and an old one is worth nothing) every ``status_seconds`` on
``region.<region>.status.<component>`` (bus.status_subject). The control panel keeps the
newest of each and tells from them whether a region is online (services/region_health.py)."""
import json
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .bus import status_subject
from .messages import utcnow

MAX_STATUS_BYTES = 4 * 1024  # encoded: a heartbeat stays small, whatever its details say
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # one NATS subject token


class ComponentStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = Field(pattern=NAME_PATTERN)
    component: str = Field(pattern=NAME_PATTERN)
    ready: bool
    sent_at: AwareDatetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _small(self) -> "ComponentStatus":
        # Checked where a status is made (a ValidationError) and again where one is read.
        size = len(self.model_dump_json().encode())
        if size > MAX_STATUS_BYTES:
            raise ValueError(f"a status is {size} bytes encoded, over the limit of {MAX_STATUS_BYTES} bytes; "
                                 f"its details must be smaller")
        return self

    @property
    def subject(self) -> str:
        return status_subject(self.region, self.component)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def received(subject: str, data: bytes) -> ComponentStatus | None:
    """The status a message on ``subject`` carries, or None when it cannot be believed: not
    one, too big, or naming another region or component than its subject (a region's link may
    publish only under its own region's subjects, and a service only its own component's)."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "region" or parts[2] != "status" or len(data) > MAX_STATUS_BYTES:
        return None
    try:
        status = ComponentStatus.model_validate_json(data)
    except (ValidationError, ValueError, json.JSONDecodeError):
        return None
    if (status.region, status.component) != (parts[1], parts[3]):
        return None
    return status
