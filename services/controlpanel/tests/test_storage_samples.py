"""Storage samples against the region's real servers (a PostgreSQL cluster of its own and
SeaweedFS): once per period, each database's and bucket's size as the server reports it,
in GB-hours for the period; once however often the sampler runs in it; a server that does
not answer holds up no other's sample."""
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from regio_controlpanel.db.models import Service, ServiceInstance
from regio_controlpanel.domain.service_instances import State
from regio_controlpanel.services.clock import SetClock
from regio_controlpanel.services.storage_sampler import StorageSampler

from .test_backups import db, provisioned, servers, vault  # noqa: F401  (fixtures)
from .test_usage import every_event as every


async def every_event(client, **params) -> list[dict]:
    """The events of the periods this test's clock is in (the session's control panel, on the
    real clock, may sample the same instances if an hour begins while the test runs)."""
    return [e for e in await every(client, **params) if e["period_start"].startswith("2026-11-05")]


async def database_size(cluster, name: str) -> int:
    conn = await asyncpg.connect(cluster.url().replace("+asyncpg", ""))
    try:
        return await conn.fetchval("SELECT pg_database_size($1)", name)
    finally:
        await conn.close()


def gb_hours(size: int, hours: int = 1) -> str:
    return str((Decimal(size) / Decimal(10**9) * hours).quantize(Decimal("0.000001")))


async def test_each_database_and_bucket_is_sampled_once_a_period_at_its_real_size(
        api, application, db, vault, servers):  # noqa: F811
    cluster, _ = servers
    env = application["live_status"]["uuid"]
    data = await provisioned(api, db, vault, servers, env)
    await data.write("hello")
    bucket = data._bucket()
    async with bucket:
        for key, size in (("a.bin", 2_000_000), ("b/c.bin", 345_678)):
            await bucket.put_object(data.credentials["STORAGE"]["bucket"], key, b"x" * size)
    objects = 2_000_000 + 345_678 + len(b"hello")  # and the note written above
    # A database service whose server does not answer, with an instance of the environment's on it.
    async with db() as session, session.begin():
        real = await session.get(Service, uuid.UUID(data.instances["DATABASE"]["service"]))
        dead = Service(region_id=real.region_id, type="DATABASE", identifier=f"gone-{uuid.uuid4().hex[:6]}",
                       name="A server that is gone", connection_encrypted=vault.encrypt(json.dumps(
                           {"admin_url": "postgresql://postgres:secret-word@127.0.0.1:9/postgres",
                            "host": "127.0.0.1", "port": 9})))
        session.add(dead)
        await session.flush()
        session.add(ServiceInstance(environment_id=uuid.UUID(env), service_id=dead.id, type="DATABASE",
                                    prefix="GONE", state=State.ATTACHED,
                                    credentials_encrypted=vault.encrypt(json.dumps({"database": "si_gone"}))))

    clock = SetClock(datetime(2026, 11, 5, 10, 20, tzinfo=UTC))
    sampler = StorageSampler(db, vault, clock, 3600)
    assert await sampler.sample() >= 2
    size = await database_size(cluster, data.credentials["DATABASE"]["database"])
    events = await every_event(api, environment=env)
    assert {(e["kind"], e["service_instance"], e["quantity"], e["unit"], e["period_start"], e["period_end"])
            for e in events} == {
        ("database_storage", data.instances["DATABASE"]["uuid"], gb_hours(size), "gb_hours",
         "2026-11-05T10:00:00Z", "2026-11-05T11:00:00Z"),
        ("bucket_storage", data.instances["STORAGE"]["uuid"], gb_hours(objects), "gb_hours",
         "2026-11-05T10:00:00Z", "2026-11-05T11:00:00Z")}
    assert {e["key"] for e in events} == {f"storage:{data.instances[t]['uuid']}:2026-11-05T10:00:00+00:00"
                                          for t in ("DATABASE", "STORAGE")}

    # Again in the same period: nothing new. The next period: sampled again; a detached
    # instance still holds its data, a removed one holds none.
    clock.advance(timedelta(minutes=30))
    await sampler.sample()
    assert len(await every_event(api, environment=env)) == 2
    async with db() as session, session.begin():
        (await session.get(ServiceInstance, uuid.UUID(data.instances["DATABASE"]["uuid"]))).state = State.DETACHED
        (await session.get(ServiceInstance, uuid.UUID(data.instances["STORAGE"]["uuid"]))).state = State.REMOVED
    clock.advance(timedelta(minutes=30))
    await sampler.sample()
    later = [e for e in await every_event(api, environment=env) if e["period_start"] == "2026-11-05T11:00:00Z"]
    assert [(e["kind"], e["quantity"]) for e in later] == [("database_storage", gb_hours(size))]
