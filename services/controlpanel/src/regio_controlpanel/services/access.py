"""Who is calling, and which organisations they belong to."""
from dataclasses import dataclass
from uuid import UUID

from ..db.models import User


@dataclass
class Caller:
    user: User
    organisations: dict[UUID, str]  # organisation id → role

    def can_see(self, organisation_id: UUID) -> bool:
        return organisation_id in self.organisations
