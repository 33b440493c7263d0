"""Repositories: which sources a region may build from, and the credentials git needs.

A URL's secret (https://user:token@...) is taken out of it and stored encrypted; an SSH
repository gets a deploy key of its own, whose public half the API shows. The stored URL
never holds a secret, so it can be shown, logged and audited as it is. The builder checks
the source again with its own settings; the checks here give the user the reason at once."""
import json
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from regio_common import repository_sources as sources
from regio_common.repository_sources import RepositorySource, SourceRefused

from ..db.models import Region, Repository
from ..domain.errors import ApiError
from . import regions as region_rules
from .access import Action, Caller
from .crypto import Vault


def new_deploy_key(comment: str) -> tuple[str, str]:
    """An ed25519 key pair in OpenSSH formats: (public, private)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{public} {comment}", private


def refused(e: SourceRefused, field: str) -> ApiError:
    """A refusal as the API says it: a sentence, naming the field."""
    return ApiError(f"{str(e)[:1].upper()}{str(e)[1:]}.", field)


def parse(url: str, field: str) -> RepositorySource:
    try:
        return sources.parse(url)
    except SourceRefused as e:
        raise refused(e, field) from None


async def check_source(source: RepositorySource, *, allow_local: bool, allow_private_hosts: bool,
                       field: str) -> None:
    """Refuses what the region(s) do not allow. A host that does not resolve now is let
    through: the builder resolves it again before cloning and refuses it then if need be."""
    try:
        sources.check(source, allow_local=allow_local)
        if source.local or allow_private_hosts:
            return
        try:
            addresses = await sources.resolve(source.host, source.effective_port)
        except SourceRefused:
            return
        sources.refuse_private(source.host, addresses)
    except SourceRefused as e:
        raise refused(e, field) from None


async def create(session: AsyncSession, caller: Caller, vault: Vault, organisation_id: UUID,
                 url: str) -> Repository:
    """A repository of the organisation. It may be used from any region the organisation can
    deploy to, so its source must be allowed in at least one of them (each application's
    region is checked when the repository is given to it)."""
    caller.require_organisation(organisation_id, Action.MANAGE, "organisation")
    source = parse(url, "url")
    regions = list((await session.execute(select(Region).where(region_rules.visible_to({organisation_id})))).scalars())
    await check_source(source, allow_local=any(r.allow_local_repositories for r in regions),
                       allow_private_hosts=any(r.allow_private_repository_hosts for r in regions), field="url")
    repo = Repository(organisation_id=organisation_id, url=source.url)
    if source.credentials is not None:
        username, password = source.credentials
        repo.credentials_encrypted = vault.encrypt(json.dumps({"username": username, "password": password}))
    session.add(repo)
    await session.flush()
    if source.scheme == "ssh":
        repo.deploy_key, private = new_deploy_key(f"regio-deploy-key-{repo.id}")
        repo.deploy_key_private_encrypted = vault.encrypt(private)
        await session.flush()
    return repo


async def check_for_region(repo: Repository, region: Region, field: str = "repository") -> None:
    """The repository may be built in ``region`` (an application there is given it)."""
    await check_source(parse(repo.url, field), allow_local=region.allow_local_repositories,
                       allow_private_hosts=region.allow_private_repository_hosts, field=field)


def shown_url(repo: Repository) -> str:
    """The URL without any secret (a row from before secrets were taken out of URLs included)."""
    try:
        return sources.parse(repo.url).url
    except SourceRefused:
        return repo.url.split("@")[-1] if "@" in repo.url else repo.url


def has_credentials(repo: Repository) -> bool:
    try:
        in_url = sources.parse(repo.url).credentials is not None
    except SourceRefused:
        in_url = False
    return repo.credentials_encrypted is not None or in_url


def access(vault: Vault, repo: Repository) -> dict[str, str] | None:
    """What the builder needs to fetch the repository, in clear: seal it before it leaves."""
    if repo.deploy_key_private_encrypted is not None:
        return {"ssh_private_key": vault.decrypt(repo.deploy_key_private_encrypted)}
    if repo.credentials_encrypted is not None:
        return json.loads(vault.decrypt(repo.credentials_encrypted))
    try:
        credentials = sources.parse(repo.url).credentials
    except SourceRefused:
        return None
    return {"username": credentials[0], "password": credentials[1]} if credentials else None


def needs_access(repo: Repository) -> bool:
    return repo.deploy_key_private_encrypted is not None or has_credentials(repo)
