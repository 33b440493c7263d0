"""Storage samples against the region's real servers (a PostgreSQL cluster of its own and
SeaweedFS): once per period, each database's and bucket's size as the server reports it,
in GB-hours for the period; once however often the sampler runs in it; a server that does
not answer holds up no other's sample."""
import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from regio_controlpanel.db.models import Service, ServiceInstance
from regio_controlpanel.domain.service_instances import State
from regio_controlpanel.region_services.storage import ObjectStorage
from regio_controlpanel.services import storage_sampler
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


async def test_a_bucket_too_big_or_slow_to_list_loses_only_its_own_sample(
        api, application, db, vault, servers, monkeypatch, caplog):  # noqa: F811
    """One tenant's bucket that takes too long to list is logged and left unsampled; every
    other bucket and database of the same servers is sampled, a bucket is summed page by page
    (never listed whole into memory), and a storage server that does not answer is given up
    for the period once, not bucket by bucket."""
    cluster, _ = servers
    live, test = application["live_status"]["uuid"], application["test_status"]["uuid"]
    slow, quick = (await provisioned(api, db, vault, servers, live)), (await provisioned(api, db, vault, servers, test))
    slow_bucket, quick_bucket = slow.credentials["STORAGE"]["bucket"], quick.credentials["STORAGE"]["bucket"]
    # More objects than one listing page holds (1000), of different sizes.
    sizes = [1 + n % 7 for n in range(1003)]
    limit = asyncio.Semaphore(16)

    async def put(client, n: int) -> None:
        async with limit:
            await client.put_object(quick_bucket, f"o/{n:05d}", b"y" * sizes[n])
    async with quick._bucket() as client:
        await asyncio.gather(*(put(client, n) for n in range(len(sizes))))
    async with slow._bucket() as client:
        await client.put_object(slow_bucket, "big.bin", b"z" * 1000)

    # Two buckets on a storage server that refuses connections.
    async with db() as session, session.begin():
        real = await session.get(Service, uuid.UUID(slow.instances["STORAGE"]["service"]))
        dead = Service(region_id=real.region_id, type="STORAGE", identifier=f"gone-{uuid.uuid4().hex[:6]}",
                       name="A storage server that is gone", connection_encrypted=vault.encrypt(json.dumps(
                           {"endpoint": "http://127.0.0.1:9", "access_key": "admin", "secret_key": "secret-word",
                            "host": "127.0.0.1", "port": 9})))
        session.add(dead)
        await session.flush()
        dead_id = dead.id
        for env in (live, test):
            session.add(ServiceInstance(environment_id=uuid.UUID(env), service_id=dead.id, type="STORAGE",
                                        prefix="GONE", state=State.ATTACHED, credentials_encrypted=vault.encrypt(
                                            json.dumps({"bucket": f"gone-{env[:8]}"}))))

    listings = {slow_bucket: 0, quick_bucket: 0}
    request = ObjectStorage._request

    async def listed(self, method, path="/", query=None, *args, **kwargs):
        bucket = path.strip("/")
        if method == "GET" and query and "list-type" in query and bucket in listings:
            listings[bucket] += 1
            if bucket == slow_bucket:  # as a listing of millions of objects would
                await asyncio.sleep(120)
        return await request(self, method, path, query, *args, **kwargs)

    async def whole_listing(*args, **kwargs):
        raise AssertionError("a bucket's whole listing held in memory to be summed")
    monkeypatch.setattr(ObjectStorage, "_request", listed)
    monkeypatch.setattr(ObjectStorage, "list_objects", whole_listing)
    monkeypatch.setattr(storage_sampler, "BUCKET_TIMEOUT_SECONDS", 5, raising=False)
    monkeypatch.setattr(storage_sampler, "SERVER_TIMEOUT_SECONDS", 5)
    caplog.set_level(logging.WARNING, logger=storage_sampler.__name__)

    sampler = StorageSampler(db, vault, SetClock(datetime(2026, 11, 5, 10, 20, tzinfo=UTC)), 3600)
    started = asyncio.get_running_loop().time()
    await sampler.sample()
    assert asyncio.get_running_loop().time() - started < 60

    def sampled(env: str) -> set[tuple[str, str, str]]:
        return {(e["kind"], e["service_instance"], e["quantity"]) for e in events if e["environment"] == env}
    events = await every_event(api, application=application["uuid"])
    assert sampled(test) == {
        ("database_storage", quick.instances["DATABASE"]["uuid"],
         gb_hours(await database_size(cluster, quick.credentials["DATABASE"]["database"]))),
        ("bucket_storage", quick.instances["STORAGE"]["uuid"], gb_hours(sum(sizes)))}
    assert sampled(live) == {
        ("database_storage", slow.instances["DATABASE"]["uuid"],
         gb_hours(await database_size(cluster, slow.credentials["DATABASE"]["database"])))}
    assert listings[quick_bucket] >= 2  # summed over both pages
    warnings = [r.getMessage() for r in caplog.records]
    assert [m for m in warnings if slow_bucket in m] == [
        f"bucket {slow_bucket} of service instance {slow.instances['STORAGE']['uuid']} not sampled this period: "
        "its listing took over 5 s"]
    assert [m for m in warnings if str(dead_id) in m] == [
        f"storage server of A storage server that is gone ({dead_id}) does not answer: 2 buckets not sampled "
        "this period: ConnectError"]
    assert not any("secret-word" in m for m in warnings)

    # The next pass of the period asks again for what was not sampled, and takes it once the bucket lists.
    monkeypatch.setattr(ObjectStorage, "_request", request)
    await sampler.sample()
    events = await every_event(api, application=application["uuid"])
    assert ("bucket_storage", slow.instances["STORAGE"]["uuid"], gb_hours(1000)) in sampled(live)
