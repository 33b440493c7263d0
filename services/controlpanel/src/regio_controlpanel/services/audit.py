"""The audit trail: who changed what, when. Recorded in the transaction of the change
itself, so a change and its record commit or roll back together."""
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AuditEvent
from .access import Action, Caller


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


def events_query(caller: Caller, organisation: UUID | None = None) -> Select:
    """The audit events the caller may read, newest first: those of the organisations it
    administers with an unscoped role (all of them, or ``organisation``, else Forbidden/NotFound)."""
    if organisation is not None:
        caller.require_organisation(organisation, Action.ADMINISTER)
        orgs = [organisation]
    else:
        orgs = [o for o, g in caller.grants.items() if g.allows(Action.ADMINISTER) and not g.scoped]
    return select(AuditEvent).where(AuditEvent.organisation_id.in_(orgs)).order_by(AuditEvent.id.desc())
