"""The web pages' forms, like the API's bodies, name objects by id: another organisation's
id in a form is refused, and nothing changes."""
import uuid

import httpx
from sqlalchemy import select

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.models import Environment, Membership, Service, User

from .test_tenancy import backup_objects, private_objects, rows_of_every_table
from .web_client import Browser, new_user


async def _query(settings, query):
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return str((await session.execute(query)).scalars().first())
    finally:
        await engine.dispose()


async def test_forms_naming_another_organisations_objects_are_refused_and_change_nothing(
        app, api, application, seeded, settings):
    ours = await private_objects(settings)
    our_env = application["test_status"]["uuid"]
    our_deployment = (await api.post("/apps/v3/deployments/", json={"environment": our_env})).json()["uuid"]

    email = await new_user(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        assert (await b.sign_in(email)).status_code == 303
        assert (await b.submit("/web/organisations", "/web/organisations", {"name": "Theirs"})).status_code == 303
        their_org = await _query(settings, select(Membership.organisation_id).join(
            User, User.id == Membership.user_id).where(User.email == email))
        assert ours["plan_group"] not in (await b.get("/web/applications/new")).text  # not offered either
        new_app = {"organisation": their_org, "name": "Theirs", "repository_url": "file:///srv/git/hello.git",
                   "region": seeded["region"]}
        made = await b.submit("/web/applications/new", "/web/applications", new_app)
        assert made.status_code == 303, made.text
        their_app = made.headers["location"].rsplit("/", 1)[1]
        their_env = await _query(settings, select(Environment.id).where(
            Environment.application_id == uuid.UUID(their_app), Environment.slug == "test"))
        storage = await _query(settings, select(Service.id).where(Service.type == "STORAGE",
                                                                  Service.organisation_id.is_(None)))
        their_backup = (await backup_objects(settings, their_env, storage))["backups"]

        cases = [
            ("/web/applications", {**new_app, "organisation": seeded["organisation"]}),
            ("/web/applications", {**new_app, "region": ours["region"]}),
            ("/web/applications", {**new_app, "plan_group": ours["plan_group"]}),
            ("/web/applications", {**new_app, "plan_group": "not an id"}),
            (f"/web/applications/{their_app}/environments", {"slug": "copied", "copy_from": our_env}),
            (f"/web/environments/{their_env}/services", {"service": ours["service"], "prefix": "OURS"}),
            (f"/web/backups/{their_backup}/restore", {"environment": our_env}),
            (f"/web/environments/{their_env}/deploy", {"redeploy": our_deployment}),
            (f"/web/applications/{their_app}/migrate", {"region": ours["region"]}),
        ]
        for action, form in cases:
            before = await rows_of_every_table(settings)
            response = await b.submit("/web/tokens", action, form)
            assert 400 <= response.status_code < 500, f"{action} {form}: {response.status_code} {response.text}"
            after = await rows_of_every_table(settings)
            changed = [t for t in before if before[t] != after.get(t)]
            assert not changed, f"{action} {form}: {response.status_code}, yet {changed} changed"
