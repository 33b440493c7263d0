"""What the migrations API refuses, and to whom: a migration is asked for an application of
one's own organisation, to a region it may use (not its own, not retired, not another
organisation's dedicated one, allowed by its plan group, offering every service it uses,
reachable by other regions' ingresses), never while a deployment or another migration of it
runs; only its organisation sees it, and only an owner or admin starts or cancels it.

The session's control panel runs its migration runner. A migration made through the API
here is of a fresh application with nothing deployed and no service, to a target region
without servers: the runner finishes it at once without reaching any server, and these tests
assert only what the requests answer. Migrations that must stay running (or have ended, or be
past their cut-over) are written to the database with a lease the runner honours, so it never
touches them."""
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import EnvironmentTrafficChanged, Traffic
from regio_common.region_status import ComponentStatus
from regio_controlpanel.db.models import (
    Application,
    AuditEvent,
    Backup,
    Deployment,
    Environment,
    Migration,
    MigrationEnvironment,
    Region,
    Service,
    ServiceInstanceBackup,
)
from regio_controlpanel.domain.migrations import Status
from regio_controlpanel.services import migrations

from .test_regions import add_region, new_application, plan_group

MIGRATIONS = "/apps/v3/application-migrations/"
SECRET = "migration-secret-5f1e9a"


@pytest.fixture
async def db(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def reachable_source(settings, seeded):
    """The seeded region, as an operator who said where its ingress is reached (else it
    forwards nothing and no application may leave it); put back after."""
    engine = make_engine(settings.database_url)
    statement = update(Region).where(Region.id == uuid.UUID(seeded["region"]))
    async with engine.begin() as connection:
        await connection.execute(statement.values(ingress_address="127.0.0.1:8780"))
    yield
    async with engine.begin() as connection:
        await connection.execute(statement.values(ingress_address=None))
    await engine.dispose()


async def add_target(settings, *, ingress_address: str | None = "127.0.0.1:9780", free_plan: bool = True,
                     **fields) -> dict:
    """A region to migrate to, without servers (nothing there is ever reached)."""
    region = await add_region(settings, free_plan=free_plan, **fields)
    if ingress_address is not None:
        engine = make_engine(settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(update(Region).where(Region.id == uuid.UUID(region["uuid"]))
                                     .values(ingress_address=ingress_address))
        await engine.dispose()
    return region


async def recorded(db, application: dict, target: dict, status: Status = Status.COPYING,
                   ended: bool = False, cut_over: bool = False) -> str:
    """A migration as the runner leaves one mid-way (or ended), leased for a day so that the
    session's runner never works on it."""
    now = datetime.now(UTC)
    async with db() as session, session.begin():
        migration = Migration(
            application_id=uuid.UUID(application["uuid"]), source_region_id=uuid.UUID(application["region"]),
            target_region_id=uuid.UUID(target["uuid"]), status=status, steps=[], requested_by="someone@example.test",
            started_at=now, lease_until=now + timedelta(days=1), ended_at=now if ended else None,
            cut_over_at=now if cut_over else None)
        migrations.record_step(migration, status)
        session.add(migration)
        await session.flush()
        migrations.log(session, migration.id, "Migration requested")
        return str(migration.id)


async def ask(client, application: dict, region: dict | str):
    return await client.post(MIGRATIONS, json={
        "application": application["uuid"], "region": region if isinstance(region, str) else region["uuid"]})


async def test_a_migration_is_made_for_an_allowed_region(api, application, settings, reachable_source):
    target = await add_target(settings)
    response = await ask(api, application, target)
    assert response.status_code == 201, response.text
    migration = response.json()
    assert (migration["application"], migration["source_region"], migration["target_region"]) == (
        application["uuid"], application["region"], target["uuid"])
    assert migration["status"] == "queued" and migration["success"] is None and migration["ended_at"] is None
    assert [s["name"] for s in migration["steps"]] == ["queued"]
    assert migration["requested_by"] == "admin@example.test"


async def test_the_target_must_be_another_region_that_exists_for_the_application(
        api, rival, application, seeded, settings, reachable_source):
    same = await ask(api, application, seeded["region"])
    assert same.status_code == 400 and "already in" in same.json()["region"][0], same.text

    # Retired, another organisation's dedicated region, and one that does not exist: one answer.
    retired = await add_target(settings, retired=True)
    theirs = await add_target(settings, organisation=rival.organisation, name="Theirs")
    answers = [await ask(api, application, r) for r in (retired, theirs, str(uuid.uuid4()))]
    assert [(a.status_code, a.json()) for a in answers] == [(400, {"region": ["Region not found."]})] * 3
    assert theirs["name"] not in answers[1].text and theirs["slug"] not in answers[1].text

    unreachable = await add_target(settings, ingress_address=None)
    refused = await ask(api, application, unreachable)
    assert refused.status_code == 400 and "cannot take migrations" in refused.json()["region"][0], refused.text

    assert (await api.get(MIGRATIONS, params={"application": application["uuid"]})).json()["count"] == 0


async def test_a_source_region_that_cannot_forward_refuses(api, application, settings):
    # Without reachable_source: the seeded region has no ingress address.
    refused = await ask(api, application, await add_target(settings))
    assert refused.status_code == 400 and "cannot forward" in refused.json()["region"][0], refused.text


async def test_the_plan_group_decides_the_regions(api, seeded, settings, reachable_source):
    developer = await plan_group(api, "Developer")
    free_app = (await new_application(api, seeded["organisation"], region=seeded["region"],
                                      plan_group=developer["uuid"])).json()
    paid_only = await add_target(settings, free_plan=False, name="Paid only")
    refused = await ask(api, free_app, paid_only)
    assert refused.status_code == 400, refused.text
    assert refused.json()["region"][0].startswith("The Developer plan deploys only to")

    business = await plan_group(api, "Business")
    paid_app = (await new_application(api, seeded["organisation"], region=seeded["region"],
                                      plan_group=business["uuid"])).json()
    assert (await ask(api, paid_app, paid_only)).status_code == 201


async def test_every_service_the_application_uses_must_be_offered_in_the_target(
        api, application, seeded, settings, db, reachable_source):
    s3 = next(s for s in (await api.get("/apps/v3/services/", params={"region": seeded["region"]})).json()["results"]
              if s["identifier"] == "s3")
    added = await api.post("/apps/v3/service-instances/", json={
        "environment": application["test_status"]["uuid"], "service": s3["uuid"], "prefix": "MEDIA"})
    assert added.status_code == 201, added.text
    without = await add_target(settings, name="No storage")
    async with db() as session, session.begin():
        await session.execute(delete(Service).where(Service.region_id == uuid.UUID(without["uuid"]),
                                                    Service.identifier == "s3"))

    refused = await ask(api, application, without)
    assert refused.status_code == 400, refused.text
    assert "does not offer" in refused.json()["region"][0] and "(s3)" in refused.json()["region"][0]


async def test_another_organisations_application_is_answered_as_not_found(api, rival, application, settings,
                                                                           reachable_source):
    target = await add_target(settings)
    for attempt in (application["uuid"], str(uuid.uuid4())):
        refused = await rival.post(MIGRATIONS, json={"application": attempt, "region": target["uuid"]})
        assert (refused.status_code, refused.json()) == (400, {"application": ["Application not found."]})
    assert (await api.get(MIGRATIONS, params={"application": application["uuid"]})).json()["count"] == 0


async def test_a_member_cannot_start_or_cancel_a_migration(api, member, application, settings, db, reachable_source):
    target = await add_target(settings)
    colleague = await member("member")
    refused = await ask(colleague, application, target)
    assert refused.status_code == 403, refused.text
    running = await recorded(db, application, target)
    assert (await colleague.get(f"{MIGRATIONS}{running}/")).status_code == 200  # a member sees it
    assert (await colleague.post(f"{MIGRATIONS}{running}/cancel/", json={})).status_code == 403
    assert (await api.get(f"{MIGRATIONS}{running}/")).json()["status"] == "copying"


async def test_nothing_else_moves_the_application_while_a_deployment_runs(api, application, settings,
                                                                          reachable_source):
    deployment = await api.post("/apps/v3/deployments/", json={"environment": application["test_status"]["uuid"]})
    assert deployment.status_code == 201, deployment.text
    try:
        refused = await ask(api, application, await add_target(settings))
        assert refused.status_code == 409 and deployment.json()["uuid"] in refused.text, refused.text
    finally:
        await api.post(f"/apps/v3/deployments/{deployment.json()['uuid']}/cancel/", json={})


async def test_while_a_migration_runs_no_second_migration_nor_deployment(api, application, settings, db,
                                                                         reachable_source):
    target = await add_target(settings)
    running = await recorded(db, application, target)

    again = await ask(api, application, await add_target(settings))
    assert again.status_code == 409 and running in again.text, again.text
    deploying = await api.post("/apps/v3/deployments/", json={"environment": application["live_status"]["uuid"]})
    assert deploying.status_code == 409 and "being migrated" in deploying.text, deploying.text

    # Once it has ended, both are possible again.
    async with db() as session, session.begin():
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(running)).values(
            status=Status.FAILURE, ended_at=datetime.now(UTC)))
    assert (await ask(api, application, await add_target(settings))).status_code == 201


async def test_while_a_migration_runs_environments_and_services_stay_as_they_are(api, application, seeded, settings,
                                                                                db, reachable_source):
    """What the migration copies is fixed when it starts: an environment or a service added,
    removed, attached or detached meanwhile would be left behind in the source region."""
    extra = await api.post("/apps/v3/environments/", json={"application": application["uuid"], "slug": "extra"})
    assert extra.status_code == 201, extra.text
    postgres = next(s for s in (await api.get("/apps/v3/services/", params={"region": seeded["region"]})
                                ).json()["results"] if s["identifier"] == "postgres-18")
    env = application["test_status"]["uuid"]
    instance = await api.post("/apps/v3/service-instances/", json={
        "environment": env, "service": postgres["uuid"], "prefix": "DEFAULT"})
    assert instance.status_code == 201, instance.text
    await recorded(db, application, await add_target(settings))

    refused = [
        await api.post("/apps/v3/environments/", json={"application": application["uuid"], "slug": "more"}),
        await api.delete(f"/apps/v3/environments/{extra.json()['uuid']}/"),
        await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres["uuid"],
                                                            "prefix": "OTHER"}),
        await api.post(f"/apps/v3/service-instances/{instance.json()['uuid']}/detach/"),
        await api.request("DELETE", f"/apps/v3/service-instances/{instance.json()['uuid']}/", json={}),
    ]
    assert [(r.status_code, "being migrated" in r.text) for r in refused] == [(409, True)] * 5, [r.text for r in refused]
    assert (await api.get(f"/apps/v3/environments/{extra.json()['uuid']}/")).status_code == 200
    assert (await api.get("/apps/v3/service-instances/", params={"environment": env})).json()["count"] == 1


async def test_while_a_migration_runs_the_application_is_not_deleted_nor_restored_into(api, application, seeded,
                                                                                      settings, db, reachable_source):
    s3 = next(s for s in (await api.get("/apps/v3/services/", params={"region": seeded["region"]})
                          ).json()["results"] if s["identifier"] == "s3")
    async with db() as session, session.begin():  # a backup as the consumer leaves one
        backup = Backup(environment_id=uuid.UUID(application["test_status"]["uuid"]), state="COMPLETED",
                        success="SUCCESS", trigger="MANUAL")
        session.add(backup)
        await session.flush()
        session.add(ServiceInstanceBackup(backup_id=backup.id, storage_service_id=uuid.UUID(s3["uuid"]),
                                          type="DATABASE", prefix="DEFAULT", state="COMPLETED", success="SUCCESS"))
    await recorded(db, application, await add_target(settings))

    restore = await api.post("/apps/v3/backup-restores/", json={"backup": str(backup.id)})
    assert restore.status_code == 409 and "being migrated" in restore.text, restore.text
    deleted = await api.delete(f"/apps/v3/applications/{application['uuid']}/")
    assert deleted.status_code == 409 and "being migrated" in deleted.text, deleted.text
    assert (await api.get(f"/apps/v3/applications/{application['uuid']}/")).status_code == 200


async def test_cancel_only_before_the_cut_over_and_only_by_its_organisation(api, rival, application, settings, db,
                                                                             reachable_source):
    target = await add_target(settings)
    ended = await recorded(db, application, target, Status.FAILURE, ended=True)
    refused = await api.post(f"{MIGRATIONS}{ended}/cancel/", json={"reason": "too late"})
    assert refused.status_code == 409 and "already ended" in refused.text, refused.text

    cutting = await recorded(db, application, target, Status.CUTTING_OVER, cut_over=True)
    refused = await api.post(f"{MIGRATIONS}{cutting}/cancel/", json={"reason": "too late"})
    assert refused.status_code == 409 and "past the point" in refused.text, refused.text
    async with db() as session:
        assert (await session.get(Migration, uuid.UUID(cutting))).cancel_requested is None

    async with db() as session, session.begin():  # only one runs at a time
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(cutting)).values(
            status=Status.SUCCESS, ended_at=datetime.now(UTC)))
    copying = await recorded(db, application, target)
    assert (await rival.post(f"{MIGRATIONS}{copying}/cancel/", json={"reason": "mine"})).status_code == 404
    async with db() as session:
        assert (await session.get(Migration, uuid.UUID(copying))).cancel_requested is None

    cancelled = await api.post(f"{MIGRATIONS}{copying}/cancel/", json={"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text
    async with db() as session:
        assert (await session.get(Migration, uuid.UUID(copying))).cancel_requested == "changed my mind"
    assert "Cancel requested: changed my mind" in (await api.get(f"{MIGRATIONS}{copying}/logs")).json()["logs"]
    too_long = await api.post(f"{MIGRATIONS}{copying}/cancel/", json={"reason": "x" * 501})
    assert too_long.status_code == 400 and "reason" in too_long.json(), too_long.text


async def test_only_the_organisation_sees_its_migrations(api, rival, application, settings, db, reachable_source):
    target = await add_target(settings)
    ours = await recorded(db, application, target, Status.FAILURE, ended=True)
    theirs_app = (await new_application(rival, rival.organisation, region=application["region"])).json()
    theirs = await recorded(db, theirs_app, target, Status.FAILURE, ended=True)

    def listed(response) -> set[str]:
        assert response.status_code == 200, response.text
        return {m["uuid"] for m in response.json()["results"]}

    everything = {"page_size": 1000}
    assert ours in listed(await api.get(MIGRATIONS, params=everything))
    assert theirs not in listed(await api.get(MIGRATIONS, params=everything))
    assert listed(await rival.get(MIGRATIONS, params=everything)) == {theirs}
    assert listed(await rival.get(MIGRATIONS, params={"application": application["uuid"]})) == set()
    assert listed(await api.get(MIGRATIONS, params={"application": application["uuid"]})) == {ours}
    for path in (f"{MIGRATIONS}{ours}/", f"{MIGRATIONS}{ours}/logs"):
        assert (await rival.get(path)).status_code == 404
        assert (await api.get(path)).status_code == 200
    assert (await api.get(f"{MIGRATIONS}{theirs}/")).status_code == 404


async def test_the_log_grows_and_is_read_from_an_offset(api, application, settings, db, reachable_source):
    running = await recorded(db, application, await add_target(settings))
    first = (await api.get(f"{MIGRATIONS}{running}/logs")).json()
    assert first["logs"] == "[regio] Migration requested\n" and first["ended"] is False

    nothing_new = (await api.get(f"{MIGRATIONS}{running}/logs", params={"offset": first["next_offset"]})).json()
    assert nothing_new["logs"] == "" and nothing_new["next_offset"] == first["next_offset"]
    async with db() as session, session.begin():
        migrations.log(session, uuid.UUID(running), "step one")
        migrations.log(session, uuid.UUID(running), "step two")
    grown = (await api.get(first["next"].removeprefix("http://cp.test"))).json()
    assert grown["logs"] == "[regio] step one\n[regio] step two\n" and grown["next_offset"] > first["next_offset"]
    whole = (await api.get(f"{MIGRATIONS}{running}/logs")).json()
    assert whole["logs"] == first["logs"] + grown["logs"]
    assert (await api.get(f"{MIGRATIONS}{running}/logs", params={"offset": -1})).status_code == 400


async def test_the_audit_trail_records_the_request_and_the_cancel_without_secrets(api, application, settings, db,
                                                                                   seeded, reachable_source):
    env = application["test_status"]["uuid"]
    assert (await api.post("/apps/v3/environment-variables/", json={
        "environment": env, "name": "TOKEN", "value": SECRET, "is_sensitive": True})).status_code == 201
    target = await add_target(settings)
    made = await ask(api, application, target)
    assert made.status_code == 201, made.text
    # The runner may be done with it already: cancelled here is one it keeps running.
    running_app = (await new_application(api, seeded["organisation"], region=seeded["region"])).json()
    running = await recorded(db, running_app, target)
    assert (await api.post(f"{MIGRATIONS}{running}/cancel/", json={"reason": "wrong region"})).status_code == 200

    async with db() as session:
        events = {e.action: e for e in (await session.execute(select(AuditEvent).where(
            AuditEvent.target_id.in_([uuid.UUID(made.json()["uuid"]), uuid.UUID(running)])))).scalars()}
    assert events.keys() == {"application.migrate", "application.migrate.cancel"}
    requested, cancel = events["application.migrate"], events["application.migrate.cancel"]
    assert requested.actor_email == cancel.actor_email == "admin@example.test"
    assert target["slug"] in requested.summary and requested.changes == {"region": target["uuid"]}
    assert cancel.changes == {"reason": "wrong region"}
    shown = [(await api.get("/iam/v3/audit-events/", params={"target": made.json()["uuid"]})).text,
             (await api.get(f"{MIGRATIONS}{made.json()['uuid']}/")).text,
             (await api.get(f"{MIGRATIONS}{made.json()['uuid']}/logs")).text,
             f"{requested.summary}{requested.changes}{cancel.summary}{cancel.changes}"]
    assert "application.migrate" in shown[0]
    assert all(SECRET not in text and seeded["token"] not in text for text in shown)


async def test_a_target_without_room_for_the_serving_environments_refuses(api, app, application, db, settings,
                                                                         reachable_source):
    """The target's controller says how much memory its runners have free (its heartbeat): the
    environments that serve must fit, or the migration would fail only at its deployments."""
    target = await add_target(settings)
    async with db() as session, session.begin():
        env = await session.get(Environment, uuid.UUID(application["test_status"]["uuid"]))
        env.instances, env.memory_mb = 2, 512
        session.add(Deployment(environment_id=env.id, status="success", success=True, steps=[],
                               ended_at=datetime.now(UTC)))
    health = app.state.region_health

    async def heard(free_mb: int) -> None:
        health._last_read.clear()  # a heartbeat each time, as if seconds apart
        for component in ("builder", "controller", "ingress"):
            status = ComponentStatus(region=target["slug"], component=component, ready=True,
                                     details={"runners": 1, "runners_ready": 1, "memory_mb_free": free_mb})
            assert health.record(status.subject, status.encode())

    offline = await ask(api, application, target)  # never heard
    assert offline.status_code == 400 and "is offline" in offline.json()["region"][0], offline.text
    await heard(1000)
    full = await ask(api, application, target)
    assert full.status_code == 400, full.text
    assert full.json()["region"] == [f"{target['name']} ({target['slug']}) has room for 1000 MB of instances; the "
                                     "application's environments need 1024 MB."]
    await heard(1024)
    assert (await ask(api, application, target)).status_code == 201


async def test_in_its_grace_period_no_migration_back_and_no_domain_changes(api, paid_application, settings, db,
                                                                          reachable_source):
    """After a cut-over the old region keeps the application's copies (their names are the ones
    a migration back would make: its deletion at the end of the grace would take the live
    ones) and forwards its hosts (a domain removed here could be claimed by another
    organisation there while still forwarded to this application)."""
    target = await add_target(settings)
    domain = (await api.post("/apps/v3/domains/", json={"environment": paid_application["test_status"]["uuid"],
                                                        "domain": f"www.{uuid.uuid4().hex[:8]}.example.com"})).json()
    migration_id = await recorded(db, paid_application, target, Status.SUCCESS, ended=True, cut_over=True)
    async with db() as session, session.begin():
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(migration_id)).values(
            grace_until=datetime.now(UTC) + timedelta(hours=1)))
        await session.execute(update(Region).where(Region.id == uuid.UUID(target["uuid"])).values(
            ingress_address="127.0.0.1:9780"))
    # As the runner leaves it after a cut-over: the application is the target's now.
    async with db() as session, session.begin():
        await session.execute(update(Application).where(Application.id == uuid.UUID(paid_application["uuid"]))
                              .values(region_id=uuid.UUID(target["uuid"])))

    back = await ask(api, paid_application, paid_application["region"])
    assert back.status_code == 409 and "migrate back after that" in back.json()["region"][0], back.text
    added = await api.post("/apps/v3/domains/", json={"environment": paid_application["test_status"]["uuid"],
                                                      "domain": f"www.{uuid.uuid4().hex[:8]}.example.com"})
    assert added.status_code == 409 and "forwards its hosts until" in added.text, added.text
    removed = await api.delete(f"/apps/v3/domains/{domain['uuid']}/")
    assert removed.status_code == 409, removed.text
    assert (await api.get(f"/apps/v3/domains/{domain['uuid']}/")).status_code == 200

    async with db() as session, session.begin():  # the grace period over: the copies deleted
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(migration_id)).values(
            source_removed_at=datetime.now(UTC)))
    assert (await api.delete(f"/apps/v3/domains/{domain['uuid']}/")).status_code == 204


async def test_only_the_source_region_confirms_a_traffic_change(application, settings, db, seeded):
    """A traffic change is believed only from the migration's source region, for the change the
    control panel asked for: another region's controller (a dedicated region's machines may be
    an organisation's own) cannot make a cut-over go on while the source still serves."""
    target = await add_target(settings)
    migration_id = await recorded(db, application, target, Status.CUTTING_OVER)
    change_id = uuid.uuid4()
    async with db() as session, session.begin():
        part = MigrationEnvironment(migration_id=uuid.UUID(migration_id),
                                    environment_id=uuid.UUID(application["test_status"]["uuid"]),
                                    traffic_change_id=change_id, traffic_mode=Traffic.HOLD, traffic_confirmed=False)
        session.add(part)
    async with db() as session:
        source_slug = (await session.get(Region, uuid.UUID(seeded["region"]))).slug

    async def heard(region: str, change: uuid.UUID) -> bool:
        async with db() as session, session.begin():
            await migrations.on_traffic_changed(session, EnvironmentTrafficChanged(
                environment_id=part.environment_id, change_id=change, mode=Traffic.HOLD,
                applied_at=datetime.now(UTC)), region)
        async with db() as session:
            return (await session.get(MigrationEnvironment, part.id)).traffic_confirmed

    assert not await heard(target["slug"], change_id)  # the target's controller
    assert not await heard(source_slug, uuid.uuid4())  # the source, about a change not asked for
    assert await heard(source_slug, change_id)
