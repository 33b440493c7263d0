"""The operator's quotas of an organisation: applications, free applications, instances over
every environment, and the GB its databases and buckets hold before it adds another service
instance. Each is refused with a 400 naming the request's field and the quota; another
organisation's applications and measurements never count."""
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.billing import OrganisationBilling, UsageEvent

from .test_plan_limits import env_url, new_application, plan_of


async def set_quotas(settings, organisation: str, **quotas) -> None:
    """As `regio billing organisation ORG --max-…` sets them."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            row = await session.get(OrganisationBilling, uuid.UUID(organisation))
            if row is None:
                row = OrganisationBilling(organisation_id=uuid.UUID(organisation))
                session.add(row)
            for name, value in quotas.items():
                setattr(row, name, value)
    finally:
        await engine.dispose()


async def create(client, seeded, organisation: str, **body):
    return await client.post("/apps/v3/applications/", json={
        "name": "Quota", "slug": f"q-{uuid.uuid4().hex[:8]}", "organisation": organisation,
        "region": seeded["region"], **body})


async def test_the_quota_of_applications(rival, api, seeded, settings):
    await set_quotas(settings, rival.organisation, max_applications=1)
    assert (await create(rival, seeded, rival.organisation)).status_code == 201
    refused = await create(rival, seeded, rival.organisation)
    assert refused.status_code == 400
    assert refused.json() == {"organisation": ["This organisation's quota of 1 applications is reached "
                                               "(quota: applications)."]}
    assert (await rival.get("/apps/v3/applications/")).json()["count"] == 1
    # Another organisation's applications count for it alone, and its quota is its own.
    assert (await create(api, seeded, seeded["organisation"])).status_code == 201


async def test_the_quota_of_free_applications(rival, seeded, settings):
    await set_quotas(settings, rival.organisation, max_free_applications=1)
    assert (await create(rival, seeded, rival.organisation)).status_code == 201
    refused = await create(rival, seeded, rival.organisation)
    assert refused.status_code == 400
    assert refused.json() == {"plan_group": ["This organisation's quota of 1 free applications is reached "
                                             "(quota: free_applications)."]}
    group, starter = await plan_of(rival, "Business")
    paid = await create(rival, seeded, rival.organisation, plan_group=group, plan=starter)
    assert paid.status_code == 201, paid.text
    # Nor may a paying application move to the free plan past the quota.
    _, developer = await plan_of(rival, "Developer")
    moved = await rival.post("/billing/v3/subscriptions/", json={"application": paid.json()["uuid"],
                                                                "plan": developer})
    assert moved.status_code == 400 and "(quota: free_applications)" in moved.json()["plan"][0]


async def test_the_quota_of_instances(rival, seeded, settings):
    await set_quotas(settings, rival.organisation, max_instances=3)
    group, business = await plan_of(rival, "Business", "Business")
    first = await create(rival, seeded, rival.organisation, plan_group=group, plan=business)
    assert first.status_code == 201  # test and live: 2 instances
    refused = await create(rival, seeded, rival.organisation, plan_group=group, plan=business)
    assert refused.status_code == 400
    assert refused.json() == {"organisation": ["This organisation's quota of 3 instances is reached "
                                               "(quota: instances)."]}
    app = first.json()
    assert (await rival.patch(env_url(app, "live"), json={"instances": 2})).status_code == 200
    response = await rival.patch(env_url(app, "test"), json={"instances": 2})
    assert response.status_code == 400
    assert response.json() == {"instances": ["This organisation's quota of 3 instances is reached (quota: instances)."]}
    assert (await rival.get(env_url(app, "test"))).json()["instances"] == 1
    # Fewer is always allowed; then the room is there again.
    assert (await rival.patch(env_url(app, "live"), json={"instances": 1})).status_code == 200
    assert (await rival.patch(env_url(app, "test"), json={"instances": 2})).status_code == 200
    response = await rival.post("/apps/v3/environments/", json={"application": app["uuid"], "slug": "staging",
                                                               "copy_from": app["test_status"]["uuid"]})
    assert response.status_code == 400 and "(quota: instances)" in response.json()["copy_from"][0]


async def test_the_quota_of_service_storage(rival, api, seeded, settings):
    await set_quotas(settings, rival.organisation, max_service_gb=Decimal("1.5"))
    app = await new_application(rival, seeded, organisation=rival.organisation)
    offered = {s["identifier"]: s["uuid"] for s in (await rival.get(
        "/apps/v3/services/", params={"region": seeded["region"]})).json()["results"]}
    env = app["test_status"]["uuid"]
    first = await rival.post("/apps/v3/service-instances/", json={"environment": env, "service": offered["s3"]})
    assert first.status_code == 201, first.text

    ours = await new_application(api, seeded)
    our_bucket = await api.post("/apps/v3/service-instances/", json={
        "environment": ours["test_status"]["uuid"], "service": offered["s3"]})
    assert our_bucket.status_code == 201
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # Another organisation's 50 GB do not count; the bucket's older, larger sample is superseded.
    await measured(settings, our_bucket.json()["uuid"], seeded["organisation"], ours, "50", now - timedelta(hours=1))
    await measured(settings, first.json()["uuid"], rival.organisation, app, "10", now - timedelta(hours=2))
    await measured(settings, first.json()["uuid"], rival.organisation, app, "1.4", now - timedelta(hours=1))
    assert (await rival.post("/apps/v3/service-instances/", json={
        "environment": env, "service": offered["postgres-18"]})).status_code == 201

    # 1.6 GB measured (3.2 GB-hours over two hours' sample): no more service instances.
    await measured(settings, first.json()["uuid"], rival.organisation, app, "3.2", now, hours=2)
    refused = await rival.post("/apps/v3/service-instances/", json={
        "environment": app["live_status"]["uuid"], "service": offered["postgres-18"]})
    assert refused.status_code == 400
    assert refused.json() == {"service": ["This organisation's quota of 1.500 GB of databases and buckets is "
                                          "reached (quota: service_gb)."]}

    # A removed bucket's data is gone: its last size no longer counts.
    engine = make_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE controlpanel.service_instances SET state = 'REMOVED' WHERE id = :id"),
                                 {"id": first.json()["uuid"]})
    await engine.dispose()
    assert (await rival.post("/apps/v3/service-instances/", json={
        "environment": app["live_status"]["uuid"], "service": offered["postgres-18"]})).status_code == 201


async def measured(settings, service_instance: str, organisation: str, app: dict, gb_hours: str, start: datetime,
                   hours: int = 1) -> None:
    """A storage sample as the control panel records one (services/usage.py's key)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            session.add(UsageEvent(
                key=f"storage:{service_instance}:{start.isoformat()}", organisation_id=uuid.UUID(organisation),
                application_id=uuid.UUID(app["uuid"]), environment_id=uuid.UUID(app["test_status"]["uuid"]),
                service_instance_id=uuid.UUID(service_instance), region_id=uuid.UUID(app["region"]),
                kind="bucket_storage", quantity=Decimal(gb_hours), unit="gb_hours", period_start=start,
                period_end=start + timedelta(hours=hours)))
    finally:
        await engine.dispose()



async def test_two_creations_at_once_cannot_both_take_the_last_place(rival, seeded, settings):
    """The check holds the organisation's row until the request commits: a second request
    waits for the first's outcome instead of counting what the first has not committed."""
    await set_quotas(settings, rival.organisation, max_applications=1)
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as holder:
            # Another transaction holding the row against the check's lock (NO KEY UPDATE: it
            # lets the new application's foreign key through, so only the check waits on it).
            await holder.execute(text("SELECT id FROM controlpanel.organisations WHERE id = :id FOR NO KEY UPDATE"),
                                 {"id": rival.organisation})
            waiting = asyncio.create_task(create(rival, seeded, rival.organisation))
            await asyncio.sleep(1.5)
            assert not waiting.done(), "the quota was checked without waiting for the organisation's row"
            await holder.rollback()
        assert (await waiting).status_code == 201
    finally:
        await engine.dispose()
    both = await asyncio.gather(create(rival, seeded, rival.organisation), create(rival, seeded, rival.organisation))
    assert sorted(r.status_code for r in both) == [400, 400]
