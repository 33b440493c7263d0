"""Proof that whoever adds a custom domain controls it, as Vercel, Heroku and Render ask for
it: a TXT record ``_regio-challenge.<domain>`` holding a value derived from the organisation
and the domain, looked up through the region's resolver. Only a verified domain is routed
(and so given a certificate by the ingress), and only then does it take its host."""
from datetime import UTC, datetime
from enum import StrEnum
from hmac import compare_digest
from uuid import UUID

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Application, Domain, Environment, Region
from ..region_services import dns
from . import hosts
from .crypto import Vault

CHALLENGE_LABEL = "_regio-challenge"


class Verification(StrEnum):
    PENDING = "pending"  # the record is not there (yet)
    VERIFIED = "verified"  # routed; stays so until the domain is removed
    FAILED = "failed"  # the look-up failed, the record holds something else, or the host is taken


def record_name(domain: str) -> str:
    return f"{CHALLENGE_LABEL}.{domain}"


def trusted(region: Region, domain: str) -> bool:
    """The region's operator controls its domain: names under it need no record when it says so."""
    return region.trust_region_domain and domain.endswith("." + region.domain)


async def verify(session: AsyncSession, vault: Vault, domain: Domain, env: Environment, app: Application,
                 region: Region) -> bool:
    """Checks the challenge and records the outcome; True when the domain became routable now
    (the caller then announces the environment's hosts). Raises dns.LookupBusy, the domain
    untouched, when no look-up could be made: a busy moment says nothing about the domain."""
    if domain.verification_status == Verification.VERIFIED:
        return False
    status, error = None, None
    if not trusted(region, domain.domain):  # a busy look-up raises before anything is written
        status, error = await _challenge(region, record_name(domain.domain),
                                         vault.domain_challenge(app.organisation_id, domain.domain))
    domain.verification_checked_at = datetime.now(UTC)
    if status is not None:
        domain.verification_status, domain.verification_error = status, error
        await session.flush()
        return False
    try:
        await hosts.claim(session, env.id, [domain.domain], "domain", domain_id=domain.id)
    except hosts.HostTaken:
        domain.verification_status = Verification.FAILED
        domain.verification_error = "Another environment already serves this domain."
        await session.flush()
        return False
    if domain.kind == "PRIMARY":  # a primary that waited for verification takes over now
        await demote_primary(session, env.id)
    domain.verification_status, domain.verification_error = Verification.VERIFIED, None
    domain.verified_at = domain.verification_checked_at
    await session.flush()
    return True


async def demote_primary(session: AsyncSession, environment_id: UUID) -> None:
    """The environment's verified primary becomes an alias (another takes its place)."""
    await session.execute(update(Domain).where(
        Domain.environment_id == environment_id, Domain.kind == "PRIMARY",
        Domain.verification_status == Verification.VERIFIED).values(kind="ALIAS"))
    await session.flush()


async def _challenge(region: Region, name: str, expected: str) -> tuple[Verification | None, str | None]:
    """None when the record holds the expected value; else the state and the reason."""
    try:
        texts = await dns.txt_records(region.dns_resolver, name)
    except dns.LookupBusy:
        raise
    except dns.LookupFailed as e:
        return Verification.FAILED, str(e)
    if any(compare_digest(text.encode(), expected.encode()) for text in texts):
        return None, None
    if not texts:
        return Verification.PENDING, f"No TXT record found at {name}."
    # The records' text is not echoed back: it is whatever the name's zone serves.
    return Verification.FAILED, f"The TXT records at {name} do not hold the expected value."
