"""The audit trail: who changed what, when. Recorded in the transaction of the change
itself, so a change and its record commit or roll back together."""
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AuditEvent
from .access import Caller


@dataclass
class AuditTrail:
    session: AsyncSession
    caller: Caller
    request_id: str | None = None
    recorded: list[AuditEvent] = field(default_factory=list)

    def record(self, organisation_id: UUID | None, action: str, target_type: str, target_id: UUID | None,
               summary: str, changes: dict | None = None) -> AuditEvent:
        """``changes`` holds plain values only: callers pass secrets as a marker, never the value."""
        event = AuditEvent(organisation_id=organisation_id, actor_id=self.caller.user.id,
                           actor_email=self.caller.user.email, action=action, target_type=target_type,
                           target_id=target_id, summary=summary, changes=_jsonable(changes or {}),
                           request_id=self.request_id)
        self.session.add(event)
        self.recorded.append(event)
        return event


def _jsonable(changes: dict) -> dict:
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in changes.items()}
