"""Migrating an application from the web Control Panel: its page offers exactly the regions
the API would accept, the form starts a migration and leads to its page (steps, write pause,
DNS changes, the growing log), which cancels it before its cut-over and not after; a member
is offered no form. As test_migration_requests.py: migrations made through the form are of
fresh applications (nothing deployed, no service) to regions without servers, and those
that must stay mid-way are written with a lease the session's runner honours."""
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select, update

from regio_controlpanel.db.models import AuditEvent, Migration, MigrationEnvironment, Service
from regio_controlpanel.domain.migrations import Status

from . import test_migration_requests as requests_api
from .test_migration_requests import add_target, recorded
from .test_regions import new_application, plan_group
from .web_client import Browser, new_user

# Its fixtures, shared: the platform's database, and the seeded region reachable by others.
db, reachable_source = requests_api.db, requests_api.reachable_source


@pytest.fixture
async def browser(app, settings, seeded):
    """The seeded admin, signed in."""
    await new_user(settings, "admin@example.test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        assert (await b.sign_in("admin@example.test")).status_code == 303
        yield b


def offered(page: httpx.Response) -> set[str]:
    form = re.search(r"<form[^>]*data-migrate.*?</form>", page.text, re.S)
    return set(re.findall(r'<option value="([^"]+)"', form.group(0))) if form else set()


async def test_the_page_offers_the_regions_the_application_may_move_to(browser, api, rival, seeded, settings, db,
                                                                       reachable_source):
    developer = await plan_group(api, "Developer")
    app = (await new_application(api, seeded["organisation"], region=seeded["region"],
                                 plan_group=developer["uuid"])).json()
    s3 = next(s for s in (await api.get("/apps/v3/services/", params={"region": seeded["region"]})
                          ).json()["results"] if s["identifier"] == "s3")
    assert (await api.post("/apps/v3/service-instances/", json={
        "environment": app["test_status"]["uuid"], "service": s3["uuid"], "prefix": "MEDIA"})).status_code == 201
    free = await add_target(settings, name="Free")
    refused = [await add_target(settings, free_plan=False, name="Paid only"),
               await add_target(settings, retired=True, name="Retired"),
               await add_target(settings, organisation=rival.organisation, name="Theirs"),
               await add_target(settings, ingress_address=None, name="Unreachable"),
               await add_target(settings, name="No storage")]
    async with db() as session, session.begin():
        await session.execute(delete(Service).where(Service.region_id == uuid.UUID(refused[-1]["uuid"]),
                                                    Service.identifier == "s3"))

    page = await browser.get(f"/web/applications/{app['uuid']}")
    assert page.status_code == 200
    shown = offered(page)
    assert free["uuid"] in shown and seeded["region"] not in shown
    assert not shown & {r["uuid"] for r in refused}
    assert all(r["name"] not in page.text for r in refused)
    # Every region offered is one the API accepts (the same rules).
    for region in shown - {free["uuid"]}:
        assert (await api.post("/apps/v3/application-migrations/", json={
            "application": app["uuid"], "region": region})).status_code in (201, 409)


async def test_a_migration_started_from_the_form_is_followed_on_its_page(browser, application, settings, db,
                                                                         reachable_source):
    target = await add_target(settings)
    path = f"/web/applications/{application['uuid']}"
    started = await browser.submit(path, f"{path}/migrate", {"region": target["uuid"]})
    assert started.status_code == 303, started.text
    migration_id = re.fullmatch(r"/web/migrations/([0-9a-f-]+)", started.headers["location"]).group(1)

    page = await browser.get(started.headers["location"])
    assert page.status_code == 200 and target["name"] in page.text and "data-steps" in page.text
    progress = (await browser.get(f"/web/migrations/{migration_id}/progress")).json()
    assert progress["log"].startswith(f"[regio] Migration of {application['slug']} from ")
    later = (await browser.get(f"/web/migrations/{migration_id}/progress?offset={progress['next_offset']}")).json()
    assert not later["log"].startswith("[regio] Migration of")  # only what came after
    assert f'data-migration-row="{migration_id}"' in (await browser.get(path)).text
    async with db() as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.target_id == uuid.UUID(migration_id)))).scalar_one()
    assert (event.action, event.actor_email) == ("application.migrate", "admin@example.test")


async def test_a_refused_migration_is_told_on_a_page_and_nothing_is_made(browser, application, settings, db,
                                                                         reachable_source):
    unreachable = await add_target(settings, ingress_address=None)
    path = f"/web/applications/{application['uuid']}"
    refused = await browser.submit(path, f"{path}/migrate", {"region": unreachable["uuid"]})
    assert refused.status_code == 400 and "cannot take migrations" in refused.text
    async with db() as session:
        assert (await session.execute(select(Migration).where(
            Migration.application_id == uuid.UUID(application["uuid"])))).first() is None


async def test_the_page_shows_the_write_pause_and_the_dns_changes(browser, api, paid_application, settings, db,
                                                                  verified_domain, reachable_source):
    domain = f"shop-{uuid.uuid4().hex[:6]}.example.org"
    await verified_domain(paid_application["test_status"]["uuid"], domain)
    target = await add_target(settings, ingress_address="203.0.113.7:443")
    done = await recorded(db, paid_application, target, Status.SUCCESS, ended=True, cut_over=True)
    async with db() as session, session.begin():
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(done)).values(
            write_pause_ms=812, grace_until=datetime.now(UTC) + timedelta(days=1)))
        session.add(MigrationEnvironment(migration_id=uuid.UUID(done),
                                         environment_id=uuid.UUID(paid_application["test_status"]["uuid"]),
                                         old_hosts=[], traffic_confirmed=True, write_pause_ms=812))
    page = await browser.get(f"/web/migrations/{done}")
    assert page.status_code == 200
    assert "812 ms" in re.search(r"data-write-pause>(.*?)</dd>", page.text, re.S).group(1)
    changes = re.search(r"<ul data-dns-changes>(.*?)</ul>", page.text, re.S).group(1)
    assert domain in changes and "203.0.113.7" in changes
    assert 'data-migration-environment="test"' in page.text
    assert "data-cancel-migration" not in page.text and "data-reload-when-ended" not in page.text


async def test_cancel_before_the_cut_over_and_not_after(browser, application, settings, db, reachable_source):
    target = await add_target(settings)
    cutting = await recorded(db, application, target, Status.CUTTING_OVER, cut_over=True)
    page = await browser.get(f"/web/migrations/{cutting}")
    assert "data-cancel-migration" not in page.text
    refused = await browser.submit(f"/web/migrations/{cutting}", f"/web/migrations/{cutting}/cancel", {})
    assert refused.status_code == 409 and "past the point" in refused.text

    async with db() as session, session.begin():
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(cutting)).values(
            status=Status.SUCCESS, ended_at=datetime.now(UTC)))
    copying = await recorded(db, application, target)
    page = await browser.get(f"/web/migrations/{copying}")
    assert "data-cancel-migration" in page.text and "data-reload-when-ended" in page.text
    cancelled = await browser.submit(f"/web/migrations/{copying}", f"/web/migrations/{copying}/cancel",
                                     {"reason": "wrong region"})
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/web/migrations/{copying}"
    page = await browser.get(f"/web/migrations/{copying}")
    assert "wrong region" in page.text and "data-cancel-migration" not in page.text
    async with db() as session:
        assert (await session.get(Migration, uuid.UUID(copying))).cancel_requested == "wrong region"
        migrations_log = await session.execute(select(AuditEvent.action).where(
            AuditEvent.target_id == uuid.UUID(copying)))
        assert list(migrations_log.scalars()) == ["application.migrate.cancel"]


async def test_a_member_is_offered_no_migration_and_cannot_start_one(app, member, application, settings, db,
                                                                     reachable_source):
    target = await add_target(settings)
    colleague = await member("member")
    email = colleague.membership["email"]
    await new_user(settings, email)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        b = Browser(client)
        assert (await b.sign_in(email)).status_code == 303
        path = f"/web/applications/{application['uuid']}"
        page = await b.get(path)
        assert page.status_code == 200 and "data-migrate" not in page.text
        refused = await b.submit(path, f"{path}/migrate", {"region": target["uuid"]})
        assert refused.status_code == 403
        running = await recorded(db, application, target)
        page = await b.get(f"/web/migrations/{running}")
        assert page.status_code == 200 and "data-cancel-migration" not in page.text
        assert (await b.submit(f"/web/migrations/{running}", f"/web/migrations/{running}/cancel", {})
                ).status_code == 403
    async with db() as session:
        assert (await session.get(Migration, uuid.UUID(running))).cancel_requested is None
