"""The usage ledger: the regions' meters' messages recorded once each, however often they
arrive; a follower of the cursor sees every event once, in order, while events are being
recorded; who sees which events; an application's month per kind; and a region's meter
believed only about the region's own environments (the attack: one region's meter reporting
another region's tenant)."""
import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import update

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import ID_HEADER, BuildFinished, BuildRequested, InstanceUsageMetered, TrafficMetered
from regio_controlpanel.db.models import Migration, Region
from regio_controlpanel.services.usage import record_usage

from .test_deployments import deploy, take
from .test_regions import add_region

EVENTS = "/billing/v3/usage-events/"
USAGE = "/billing/v3/usage/"


@pytest.fixture(scope="module")
async def js(settings):
    nc = await bus.connect(settings.nats_url, "test-usage")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def db(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def send(js, region: str, message, message_id: uuid.UUID | None = None) -> int:
    """Published as region ``region``'s meter would; the stream sequence it got."""
    ack = await js.publish(message.subject(region), message.model_dump_json().encode(),
                           headers={**message.headers(), **({ID_HEADER: str(message_id)} if message_id else {})})
    return ack.seq


async def handled(js, region: str, seq: int, timeout: float = 15.0) -> None:
    """Until the control panel's usage consumer of ``region`` has acknowledged stream message ``seq``."""
    durable = bus.durable_name("controlpanel-usage", region)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if (await js.consumer_info(bus.EVENTS.name, durable)).ack_floor.stream_seq >= seq:
                return
        except Exception:  # not made yet: the region's link starts within seconds
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{durable} did not handle message {seq}")
        await asyncio.sleep(0.05)


async def every_event(client, **params) -> list[dict]:
    """Every event the client sees, following the cursor."""
    found, after = [], 0
    while True:
        page = (await client.get(EVENTS, params={**params, "after": after, "limit": 1000})).json()
        found += page["results"]
        if not page["results"]:
            return found
        after = page["next_after"]


def at_hour(hour: int) -> datetime:
    return datetime(2026, 11, 3, hour, tzinfo=UTC)


async def test_a_measurement_is_recorded_once_however_often_it_arrives(api, js, settings, seeded, application):
    env = application["test_status"]["uuid"]
    instance = uuid.uuid4()
    segment = InstanceUsageMetered(instance_id=instance, environment_id=env, runner="runner-1", memory_mb=512,
                                   segment_start=at_hour(10), segment_end=at_hour(10) + timedelta(seconds=1234.5))
    traffic = TrafficMetered(environment_id=env, ingress="ingress-1", period_start=at_hour(10),
                             period_end=at_hour(11), requests=1200, bytes_served=3_000_000)
    await send(js, settings.region, segment)
    await send(js, settings.region, segment, uuid.uuid4())  # past JetStream's duplicate window
    # Sent again by a meter that restarted: another message, the same instant in another offset.
    again = InstanceUsageMetered(**{**segment.model_dump(exclude={"id"}),
                                    "segment_start": at_hour(10).astimezone(timezone(timedelta(hours=1)))})
    await send(js, settings.region, again)
    await send(js, settings.region, traffic)
    last = await send(js, settings.region, traffic, uuid.uuid4())
    await handled(js, settings.region, last)

    events = await every_event(api, environment=env)
    assert [(e["kind"], e["quantity"], e["unit"], e["memory_mb"]) for e in events] == [
        ("instance", "1234.500000", "seconds", 512), ("requests", "1200.000000", "requests", None),
        ("bytes_served", "3000000.000000", "bytes", None)]
    assert [e["key"] for e in events] == [
        f"instance:{instance}:2026-11-03T10:00:00+00:00",
        f"traffic:ingress-1:{env}:2026-11-03T10:00:00+00:00:requests",
        f"traffic:ingress-1:{env}:2026-11-03T10:00:00+00:00:bytes"]
    first = events[0]
    assert (first["organisation"], first["application"], first["region"], first["service_instance"]) == (
        seeded["organisation"], application["uuid"], seeded["region"], None)
    assert datetime.fromisoformat(first["period_end"]) == at_hour(10) + timedelta(seconds=1234.5)


async def test_figures_that_cannot_be_true_and_deleted_environments_are_dropped_and_hold_nothing_up(
        api, js, settings, application):
    env = application["test_status"]["uuid"]
    backwards = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=512,
                                     segment_start=at_hour(12), segment_end=at_hour(11))
    negative = TrafficMetered(environment_id=env, ingress="i", period_start=at_hour(10), period_end=at_hour(11),
                              requests=-5, bytes_served=10**30)
    gone = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=uuid.uuid4(), runner="r", memory_mb=512,
                                segment_start=at_hour(10), segment_end=at_hour(11))
    fine = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=256,
                                segment_start=at_hour(10), segment_end=at_hour(11))
    for message in (backwards, negative, gone):
        await send(js, settings.region, message)
    await handled(js, settings.region, await send(js, settings.region, fine))
    assert [(e["kind"], e["quantity"]) for e in await every_event(api, environment=env)] == [
        ("instance", "3600.000000")]


async def test_a_builds_time_is_recorded_against_its_environment(api, js, settings, application):
    env = application["test_status"]["uuid"]
    deployment = await deploy(api, application)
    dep_id = uuid.UUID(deployment["uuid"])
    await take(js, BuildRequested, settings.region, dep_id)
    build = BuildFinished(deployment_id=dep_id, build_id=uuid.uuid4(), success=False, error="COPY failed",
                          build_seconds=95.25)
    await send(js, settings.region, build)
    await send(js, settings.region, build, uuid.uuid4())
    deadline = asyncio.get_running_loop().time() + 10
    while not (events := await every_event(api, environment=env)):
        assert asyncio.get_running_loop().time() < deadline, "no build event"
        await asyncio.sleep(0.05)
    assert [(e["key"], e["kind"], e["quantity"], e["unit"]) for e in events] == [
        (f"build:{build.build_id}", "build", "95.250000", "seconds")]
    assert datetime.fromisoformat(events[0]["period_end"]) - datetime.fromisoformat(events[0]["period_start"]) == \
        timedelta(seconds=95.25)
    # The build ended the deployment as before the meter.
    assert (await api.get(f"/apps/v3/deployments/{dep_id}/")).json()["status"] == "failure"


async def test_a_region_is_believed_only_about_its_own_environments_and_a_migrations(
        app, api, js, settings, application, db):
    """The attack: another region's meter (its operator, a dedicated region's owner) reports
    usage of an environment that runs here, to bill its tenant. Only a migration from or to
    that region makes it that region's to report, until the migration's grace ends."""
    env = application["test_status"]["uuid"]
    other = await add_region(settings, name="Elsewhere")
    try:
        now = datetime.now(UTC)
        forged = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="theirs", memory_mb=4096,
                                      segment_start=now - timedelta(minutes=30), segment_end=now)
        await handled(js, other["slug"], await send(js, other["slug"], forged), timeout=30)
        assert await every_event(api, environment=env) == []

        # The application came from that region: it reports what ran there until the grace ended.
        async with db() as session, session.begin():
            session.add(Migration(application_id=uuid.UUID(application["uuid"]),
                                  source_region_id=uuid.UUID(other["uuid"]),
                                  target_region_id=uuid.UUID(application["region"]), status="success",
                                  requested_by="someone@example.test", cut_over_at=now - timedelta(minutes=20),
                                  ended_at=now - timedelta(minutes=19), grace_until=now + timedelta(hours=1)))
        in_grace = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="theirs", memory_mb=512,
                                        segment_start=now - timedelta(minutes=40),
                                        segment_end=now - timedelta(minutes=20))
        after_grace = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="theirs",
                                           memory_mb=512, segment_start=now + timedelta(hours=2),
                                           segment_end=now + timedelta(hours=2, minutes=5))
        await send(js, other["slug"], after_grace)
        await handled(js, other["slug"], await send(js, other["slug"], in_grace))
        events = await every_event(api, environment=env)
        assert [(e["key"], e["region"]) for e in events] == [
            (f"instance:{in_grace.instance_id}:{in_grace.segment_start.isoformat()}", other["uuid"])]
    finally:
        async with db() as session, session.begin():
            await session.execute(update(Region).where(Region.id == uuid.UUID(other["uuid"]))
                                  .values(retired_at=datetime.now(UTC)))


async def record(db, application: dict, kind: str, quantity, unit: str, start: datetime, *, memory_mb=None,
                 environment: str | None = None, organisation: str | None = None, hours: float = 1) -> None:
    async with db() as session, session.begin():
        assert await record_usage(
            session, key=f"test:{uuid.uuid4()}", organisation_id=uuid.UUID(organisation or application["organisation"]),
            application_id=uuid.UUID(application["uuid"]),
            environment_id=uuid.UUID(environment or application["live_status"]["uuid"]), service_instance_id=None,
            region_id=uuid.UUID(application["region"]), kind=kind, memory_mb=memory_mb, quantity=Decimal(quantity),
            unit=unit, period_start=start, period_end=start + timedelta(hours=hours))


async def test_a_follower_of_the_cursor_gets_every_event_once_in_order_while_they_are_recorded(
        api, application, db):
    """Writers whose transactions overlap (each waits a moment before it commits): without the
    ledger's lock a later id commits first, the follower moves past the earlier one and never
    sees it."""
    writers, each = 4, 30
    keys = [[f"follow:{application['uuid']}:{w}:{i}" for i in range(each)] for w in range(writers)]

    async def write(mine: list[str]) -> None:
        for key in mine:
            async with db() as session, session.begin():
                await record_usage(
                    session, key=key, organisation_id=uuid.UUID(application["organisation"]),
                    application_id=uuid.UUID(application["uuid"]), environment_id=None, service_instance_id=None,
                    region_id=uuid.UUID(application["region"]), kind="requests", memory_mb=None, quantity=Decimal(1),
                    unit="requests", period_start=at_hour(1), period_end=at_hour(2))
                await asyncio.sleep(random.uniform(0, 0.01))

    writing = asyncio.gather(*(write(mine) for mine in keys))
    seen, after = [], 0
    while True:
        done = writing.done()
        page = (await api.get(EVENTS, params={"application": application["uuid"], "after": after, "limit": 7})).json()
        seen += page["results"]
        after = page["next_after"]
        if done and not page["results"]:
            break
        await asyncio.sleep(random.uniform(0, 0.005))
    await writing
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert sorted(e["key"] for e in seen) == sorted(k for mine in keys for k in mine)


async def test_who_sees_which_events(api, member, stranger, rival, application, db, seeded):
    live, test = application["live_status"]["uuid"], application["test_status"]["uuid"]
    await record(db, application, "requests", 10, "requests", at_hour(1), environment=live)
    await record(db, application, "requests", 20, "requests", at_hour(1), environment=test)
    await record(db, application, "requests", 30, "requests", at_hour(1), organisation=rival.organisation)

    mine = await every_event(api, application=application["uuid"])
    assert sorted(e["quantity"] for e in mine) == ["10.000000", "20.000000"]
    assert [e["quantity"] for e in await every_event(api, environment=live)] == ["10.000000"]
    assert [e["quantity"] for e in await every_event(api, application=application["uuid"],
                                                     organisation=seeded["organisation"])] == ["10.000000",
                                                                                               "20.000000"]
    # Another organisation: nothing of this one's, whatever it filters by (and the row the
    # test wrote under its id is its own).
    assert await every_event(stranger, application=application["uuid"]) == []
    assert await every_event(stranger, organisation=seeded["organisation"]) == []
    assert [e["quantity"] for e in await every_event(rival)] == ["30.000000"]
    assert (await stranger.get(USAGE, params={"application": application["uuid"], "period": "2026-11"})).status_code \
        == 404
    # A member narrowed to one environment: its events only; a billing member: the organisation's.
    scoped = await member("member", environments=[live])
    assert [e["quantity"] for e in await every_event(scoped, application=application["uuid"])] == ["10.000000"]
    assert (await scoped.get(USAGE, params={"application": application["uuid"], "period": "2026-11"})).status_code \
        == 404  # the application's totals tell of its other environments
    whole = await member("member", applications=[application["uuid"]])
    assert (await whole.get(USAGE, params={"application": application["uuid"], "period": "2026-11"})).status_code \
        == 200
    billing = await member("billing")
    assert sorted(e["quantity"] for e in await every_event(billing, application=application["uuid"])) == [
        "10.000000", "20.000000"]
    assert (await billing.get(USAGE, params={"application": application["uuid"], "period": "2026-11"})).status_code \
        == 200


async def test_bad_input_names_the_field(api, application):
    for params, field in (({"limit": 1001}, "limit"), ({"after": -1}, "after"), ({"application": "x"}, "application")):
        response = await api.get(EVENTS, params=params)
        assert response.status_code == 400 and field in response.json(), (params, response.text)
    for period in ("2026-13", "26-11", "2026-11-01", "x" * 5000):
        response = await api.get(USAGE, params={"application": application["uuid"], "period": period})
        assert response.status_code == 400 and "period" in response.json(), (period, response.text)
    empty = (await api.get(EVENTS, params={"application": application["uuid"], "after": 12345})).json()
    assert empty == {"results": [], "next_after": 12345}


async def test_an_applications_month_per_kind_recorded_and_billed(api, application, db):
    nov = datetime(2026, 11, 1, tzinfo=UTC)
    await record(db, application, "instance", 7200, "seconds", nov, memory_mb=512)  # 0.5 GB × 2 h = 1 GB-hour
    await record(db, application, "instance", 1800, "seconds", datetime(2026, 11, 30, 23, tzinfo=UTC),
                 memory_mb=1024)  # + 0.5 GB-hour, the month's last hour
    await record(db, application, "instance", 3600, "seconds", datetime(2026, 12, 1, tzinfo=UTC),
                 memory_mb=1024)  # December's
    await record(db, application, "instance", 3600, "seconds", datetime(2026, 10, 31, 23, tzinfo=UTC),
                 memory_mb=1024)  # October's
    await record(db, application, "requests", 2_500_000, "requests", nov)
    await record(db, application, "bytes_served", 3_000_000_000, "bytes", nov)
    await record(db, application, "build", 90, "seconds", nov)
    await record(db, application, "database_storage", "0.25", "gb_hours", nov)

    response = await api.get(USAGE, params={"application": application["uuid"], "period": "2026-11"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["period"], body["period_start"], body["period_end"]) == (
        "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert {u["kind"]: (u["quantity"], u["unit"], u["billed_quantity"], u["billing_unit"]) for u in body["usage"]} == {
        "instance": ("9000.000000", "seconds", "1.500000", "GB-hour"),
        "database_storage": ("0.250000", "gb_hours", "0.250000", "GB-hour"),
        "bucket_storage": ("0.000000", "gb_hours", "0.000000", "GB-hour"),
        "requests": ("2500000.000000", "requests", "2.500000", "million requests"),
        "bytes_served": ("3000000000.000000", "bytes", "3.000000", "GB"),
        "build": ("90.000000", "seconds", "1.500000", "minute")}


async def test_a_deleted_applications_last_usage_is_still_billed_to_its_organisation(
        api, js, settings, seeded, application, db):
    """Its containers stop after the deletion, and their last segments arrive after it: they
    are recorded against the organisation; usage that began long after is not believed, nor
    another region's report about it."""
    env = application["test_status"]["uuid"]
    assert (await api.delete(f"/apps/v3/applications/{application['uuid']}/")).status_code == 204
    now = datetime.now(UTC)
    last = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=256,
                                segment_start=now - timedelta(minutes=5), segment_end=now + timedelta(seconds=3))
    later = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=256,
                                 segment_start=now + timedelta(hours=1), segment_end=now + timedelta(hours=2))
    other = await add_region(settings, name="Elsewhere")
    try:
        forged = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="theirs", memory_mb=256,
                                      segment_start=now - timedelta(minutes=1), segment_end=now)
        await handled(js, other["slug"], await send(js, other["slug"], forged), timeout=30)
        await send(js, settings.region, later)
        await handled(js, settings.region, await send(js, settings.region, last))
        events = await every_event(api, environment=env)
        assert [(e["key"], e["organisation"], e["application"]) for e in events] == [
            (f"instance:{last.instance_id}:{last.segment_start.isoformat()}", seeded["organisation"],
             application["uuid"])]
    finally:
        async with db() as session, session.begin():
            await session.execute(update(Region).where(Region.id == uuid.UUID(other["uuid"]))
                                  .values(retired_at=datetime.now(UTC)))


async def test_figures_no_meter_can_report_are_refused(api, js, settings, application):
    """One absurd figure (a tenant owning a dedicated region can write to its stream) would
    overflow its organisation's invoice and stop it: segments longer than a day, in the
    future, of a size no plan has, or traffic past any machine's, are dropped."""
    env = application["test_status"]["uuid"]
    now = datetime.now(UTC)
    impossible = [
        InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=512,
                             segment_start=now - timedelta(days=3), segment_end=now),
        InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=512,
                             segment_start=now, segment_end=now + timedelta(hours=1)),
        InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=10**6,
                             segment_start=now - timedelta(hours=1), segment_end=now),
        TrafficMetered(environment_id=env, ingress="i", period_start=now - timedelta(hours=1), period_end=now,
                       requests=10**11, bytes_served=1),
        TrafficMetered(environment_id=env, ingress="i", period_start=now - timedelta(hours=1), period_end=now,
                       requests=1, bytes_served=10**16),
    ]
    for message in impossible:
        await send(js, settings.region, message)
    fine = InstanceUsageMetered(instance_id=uuid.uuid4(), environment_id=env, runner="r", memory_mb=4096,
                                segment_start=now - timedelta(hours=1), segment_end=now)
    await handled(js, settings.region, await send(js, settings.region, fine))
    assert [(e["kind"], e["memory_mb"]) for e in await every_event(api, environment=env)] == [("instance", 4096)]

