"""Another tenant of the running region: a user who owns an organisation of their own and
nothing else, with an API token. Made in the control panel's database as its own code makes
users (there is no sign-up in the API), for tests written as that tenant or against it."""
import asyncio
import uuid
from dataclasses import dataclass

import httpx

from regio_cli.region import Region
from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.models import Membership, Organisation, User
from regio_controlpanel.services import tokens


@dataclass
class Tenant:
    api_url: str
    organisation: str
    token: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Token {self.token}"}, timeout=30)


def new_tenant(region: Region, name: str) -> Tenant:
    controlpanel = next(s for s in region.services() if s.name == "controlpanel")
    url = region.service_env(controlpanel)[controlpanel.prefix + "DATABASE_URL"]

    async def make() -> tuple[str, str]:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                user = User(email=f"{uuid.uuid4().hex[:8]}@tenant.test", first_name=name, last_name="Owner")
                organisation = Organisation(name=f"{name} {uuid.uuid4().hex[:6]}")
                session.add_all([user, organisation])
                await session.flush()
                session.add(Membership(organisation_id=organisation.id, user_id=user.id, role="owner"))
                return str(organisation.id), await tokens.create(session, user, name="tests")
        finally:
            await engine.dispose()

    organisation, token = asyncio.run(make())
    return Tenant(region.api_url, organisation, token)
