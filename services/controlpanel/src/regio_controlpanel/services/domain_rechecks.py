"""Custom domains waiting for verification are checked again every few minutes, as platforms
do, so that an owner who creates the TXT record later needs no further step; after a week
without it, only the owner's own "verify" checks again. Each check has its own transaction:
a slow resolver holds one domain's row, never the whole pass."""
import asyncio
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.outbox import Outbox

from ..db.models import Application, Domain, Environment, Region
from ..region_services import dns
from . import domain_verification, domains
from .crypto import Vault
from .domain_verification import Verification

log = logging.getLogger(__name__)

RECHECK_AFTER = timedelta(minutes=5)
GIVE_UP_AFTER = timedelta(days=7)
BATCH = 50
# Look-ups at once: each takes one of the process's few slots (dns.MAX_UNDER_WAY), so the
# re-checks leave most to people checking their own domain. One that finds none records that
# failure ("too many look-ups") and is checked again RECHECK_AFTER later, as any other.
CONCURRENCY = 2


class DomainRechecks:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, vault: Vault,
                 interval_seconds: float):
        self.sessions = sessions
        self.outbox = outbox
        self.vault = vault
        self.interval_seconds = interval_seconds

    async def run(self) -> None:
        while True:
            await self.recheck_due()
            await asyncio.sleep(self.interval_seconds)

    async def recheck_due(self) -> int:
        """Checks the domains due; returns how many became verified."""
        now = datetime.now(UTC)
        async with self.sessions() as session:
            due = list((await session.execute(
                select(Domain.id).where(
                    Domain.verification_status != Verification.VERIFIED, Domain.created_at > now - GIVE_UP_AFTER,
                    or_(Domain.verification_checked_at.is_(None), Domain.verification_checked_at < now - RECHECK_AFTER))
                .order_by(Domain.verification_checked_at.asc().nulls_first()).limit(BATCH))).scalars())
        limit = asyncio.Semaphore(CONCURRENCY)

        async def check(domain_id: UUID) -> bool:
            async with limit:
                try:
                    return await self._check(domain_id)
                except dns.LookupBusy:  # requests hold the look-up slots: the next round checks it
                    return False
                except Exception:  # one domain's failure does not stop the others'
                    log.exception("re-checking domain %s failed", domain_id)
                    return False

        return sum(await asyncio.gather(*(check(d) for d in due)))

    async def _check(self, domain_id: UUID) -> bool:
        async with self.sessions() as session, session.begin():
            row = (await session.execute(
                select(Domain, Environment, Application, Region)
                .join(Environment, Environment.id == Domain.environment_id)
                .join(Application, Application.id == Environment.application_id)
                .join(Region, Region.id == Application.region_id).where(Domain.id == domain_id)
                .with_for_update(of=Domain, skip_locked=True))).first()
            if row is None:  # gone, or being checked by a request right now
                return False
            domain, env, app, region = row
            # Locked above already: the check itself, not the request's path that locks again.
            if not await domain_verification.verify(session, self.vault, domain, env, app, region):
                return False
            await domains.announce(session, self.outbox, env, app)
            log.info("domain %s verified by its periodic check", domain.domain)
            return True
