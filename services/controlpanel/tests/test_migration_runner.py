"""The migration runner of the session's control panel moving an application's database and
bucket between two regions' REAL servers: the seeded region (source) on one PostgreSQL
cluster and one SeaweedFS, a region added here (target) on another cluster and another
SeaweedFS. The application has nothing deployed, so nothing serves: the runner skips the
deployment and the hold of requests, and still copies, freezes the source, catches up,
copies the sequences and swaps the instances' credentials."""
import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import select, update

from regio_common.testing.plugin import own_postgres
from regio_controlpanel.db.models import Migration, ServiceInstance
from regio_controlpanel.region_services.storage import Credentials, ObjectStorage, StorageError

from .region_servers import other_storage  # noqa: F401  (the target region's storage)
from .test_backups import Data, db, provisioned, real_servers, register, vault  # noqa: F401
from .test_migration_requests import MIGRATIONS, add_target, reachable_source  # noqa: F401
from .test_region_replication import source, target  # noqa: F401  (the two regions' clusters)

TIMEOUT = 180.0
ROWS = 20_000  # the copy of the bulk takes a moment: writes land while it runs


@pytest.fixture
async def regions(db, vault, seeded, settings, source, target, storage, other_storage,  # noqa: F811
                  reachable_source):  # noqa: F811
    """The seeded region on the source's servers, a new region (reachable) on the target's."""
    await register(db, vault, seeded["region"], real_servers(source, storage))
    region = await add_target(settings, name="Target")
    await register(db, vault, region["uuid"], real_servers(target, other_storage))
    return region


@pytest.fixture
async def data(api, db, vault, application, source, storage, regions) -> Data:  # noqa: F811
    """The test environment's DATABASE and STORAGE, provisioned on the source's servers and
    attached (as a deployment leaves them), holding rows and objects; nothing deployed."""
    made = await provisioned(api, db, vault, (source, storage), application["test_status"]["uuid"])
    for i in range(5):
        await made.write(f"before {i}")
    await made.sql(f"INSERT INTO notes (text) SELECT 'bulk ' || g FROM generate_series(1, {ROWS}) g")
    return made


async def migrate(api, application: dict, region: dict) -> dict:
    response = await api.post(MIGRATIONS, json={"application": application["uuid"], "region": region["uuid"]})
    assert response.status_code == 201, response.text
    return response.json()


async def reached(api, migration: dict, status: str | None = None) -> dict:
    """The migration once it has ended (or reached ``status``)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = (await api.get(f"{MIGRATIONS}{migration['uuid']}/")).json()
        if found["ended_at"] is not None or (status is not None and found["status"] == status):
            return found
        assert time.monotonic() < deadline, f"still {found['status']} after {TIMEOUT:g} s"
        await asyncio.sleep(0.05)


async def logs(api, migration: dict) -> str:
    return (await api.get(f"{MIGRATIONS}{migration['uuid']}/logs")).json()["logs"]


async def admin(cluster, sql: str, *args, database: str = "postgres") -> list:
    conn = await asyncpg.connect(cluster.url(database=database))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def leftovers(cluster, database: str) -> dict[str, list[str]]:
    """What a copy makes on a server and must not leave behind."""
    found = {
        "slots": [r[0] for r in await admin(cluster, "SELECT slot_name FROM pg_replication_slots")],
        "subscriptions": [r[0] for r in await admin(cluster, "SELECT subname FROM pg_subscription")],
        "roles": [r[0] for r in await admin(cluster, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'mig\\_%'")],
    }
    if await databases(cluster, database):
        found["publications"] = [r[0] for r in await admin(cluster, "SELECT pubname FROM pg_publication",
                                                           database=database)]
    return {what: names for what, names in found.items() if names}


async def databases(cluster, name: str) -> list[str]:
    return [r[0] for r in await admin(cluster, "SELECT datname FROM pg_database WHERE datname = $1", name)]


async def buckets(server, name: str) -> bool:
    """Whether the bucket exists on the server (asked with its admin keys)."""
    async with ObjectStorage(server.endpoint, server.admin_credentials()) as s3:
        try:
            await s3.list_objects(name)
        except StorageError as e:
            if e.status == 404:
                return False
            raise
    return True


async def objects(server, bucket: str) -> dict[str, bytes]:
    async with ObjectStorage(server.endpoint, server.admin_credentials()) as s3:
        return {o.key: await s3.get_object(bucket, o.key) for o in await s3.list_objects(bucket)}


async def stored_credentials(db, vault, instance_id: str) -> dict:  # noqa: F811
    async with db() as session:
        instance = await session.get(ServiceInstance, uuid.UUID(instance_id))
        return json.loads(vault.decrypt(instance.credentials_encrypted))


async def app_connection(cluster, credentials: dict) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=cluster.port, user=credentials["role"],
                                 password=credentials["password"], database=credentials["database"])


async def services_of(api, region: str) -> dict[str, str]:
    offered = (await api.get("/apps/v3/services/", params={"region": region, "page_size": 100})).json()["results"]
    return {s["identifier"]: s["uuid"] for s in offered}


async def assert_source_as_it_was(api, db, vault, data: Data, seeded: dict, source_cluster,  # noqa: F811
                                  source_storage) -> None:
    """The instances keep the source's services and credentials, its database takes the
    application's writes, and no part of a copy is left on the source."""
    env = data.instances["DATABASE"]["environment"]
    listed = (await api.get("/apps/v3/service-instances/", params={"environment": env})).json()["results"]
    theirs = await services_of(api, seeded["region"])
    assert {(i["service"], i["region"]) for i in listed} == {
        (theirs["postgres-18"], seeded["region"]), (theirs["s3"], seeded["region"])}
    for kind, instance in data.instances.items():
        assert await stored_credentials(db, vault, instance["uuid"]) == data.credentials[kind]
    await data.write("after the rollback")  # as its application would: database and bucket
    assert (await data.rows())[-1] == "after the rollback"
    database = data.credentials["DATABASE"]["database"]
    frozen = await admin(source_cluster, "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d "
                                         "ON d.oid = s.setdatabase WHERE d.datname = $1", database)
    assert frozen == []
    assert await leftovers(source_cluster, database) == {}
    assert await buckets(source_storage, data.credentials["STORAGE"]["bucket"])


async def test_the_data_moves_to_the_target_and_the_source_is_frozen(
        api, db, vault, application, seeded, data, regions, source, target, storage, other_storage):  # noqa: F811
    source_db = data.credentials["DATABASE"]
    written: list[int] = []
    refused: list[Exception] = []
    running = True

    async def keep_writing() -> None:
        """The application's writes until the source refuses them (frozen)."""
        try:
            conn = await app_connection(source, source_db)
            try:
                while running:
                    written.append(await conn.fetchval("INSERT INTO notes (text) VALUES ('during') RETURNING id"))
            finally:
                conn.terminate()
        except Exception as e:  # the freeze ends the session: asyncpg says so in more than one way
            refused.append(e)

    writer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.2)
    began = time.monotonic()
    migration = await migrate(api, application, regions)
    done = await reached(api, migration)
    took = time.monotonic() - began
    running = False
    await writer
    print(f"\nmigration with {ROWS} rows: {took:.1f} s ({done['status']}), {len(written)} rows written meanwhile")
    assert done["status"] == "success", (done["error"], await logs(api, migration))
    assert refused, "the source was never frozen under the application's writes"
    assert written, "no write landed while the migration ran"

    # The instances now use the target's services and credentials.
    env = application["test_status"]["uuid"]
    listed = (await api.get("/apps/v3/service-instances/", params={"environment": env})).json()["results"]
    targets = await services_of(api, regions["uuid"])
    assert {(i["type"], i["service"], i["region"]) for i in listed} == {
        ("DATABASE", targets["postgres-18"], regions["uuid"]), ("STORAGE", targets["s3"], regions["uuid"])}
    now_db = await stored_credentials(db, vault, data.instances["DATABASE"]["uuid"])
    now_s3 = await stored_credentials(db, vault, data.instances["STORAGE"]["uuid"])
    assert now_db["database"] == source_db["database"] and now_db["password"] != source_db["password"]
    assert f":{target.port}/" in now_db["dsn"] and now_s3["access_key"] != data.credentials["STORAGE"]["access_key"]

    # Every row written before the freeze is in the target, and the serial goes on there.
    conn = await app_connection(target, now_db)
    try:
        on_target = {r["id"]: r["text"] for r in await conn.fetch("SELECT id, text FROM notes")}
        assert set(written) <= on_target.keys()
        assert len(on_target) == 5 + ROWS + len(written)
        next_id = await conn.fetchval("INSERT INTO notes (text) VALUES ('in the target') RETURNING id")
        assert next_id > max(on_target)
    finally:
        await conn.close()
    source_rows = await admin(source, "SELECT id, text FROM notes", database=source_db["database"])
    assert {r["id"]: r["text"] for r in source_rows} == on_target

    # Every object is in the target's bucket.
    bucket = data.credentials["STORAGE"]["bucket"]
    moved = await objects(other_storage, now_s3["bucket"])
    assert moved == await objects(storage, bucket) and len(moved) == 5

    # The source's database refuses the application (frozen, kept detached until the grace ends).
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
        conn = await app_connection(source, source_db)
        try:
            await conn.execute("INSERT INTO notes (text) VALUES ('too late')")
        finally:
            await conn.close()

    # And its bucket refuses the application's key: read, not written (a write after the last
    # sync would have been lost).
    source_key = data.credentials["STORAGE"]
    async with ObjectStorage(storage.endpoint, Credentials(source_key["access_key"], source_key["secret_key"])) as app:
        with pytest.raises(StorageError) as refused_write:
            await app.put_object(bucket, "too-late.txt", b"lost")
        assert refused_write.value.status == 403
        assert len(await app.list_objects(bucket)) == 5

    # No slot, publication, subscription nor replication role is left on either server.
    assert await leftovers(source, source_db["database"]) == {}
    assert await leftovers(target, source_db["database"]) == {}

    # The log names each step, and no secret nor database name.
    text = await logs(api, migration)
    for step in ("database service DEFAULT: created", "storage service DEFAULT: created", "database DEFAULT: copied",
                 "storage DEFAULT: 5 objects", "database DEFAULT: caught up, 1 sequence(s) copied",
                 "storage DEFAULT: frozen, last", "cut over to", "Migration succeeded"):
        assert step in text, text
    for secret in (source_db["password"], now_db["password"], data.credentials["STORAGE"]["secret_key"],
                   now_s3["secret_key"], "postgres://", "s3://", "si_", bucket):
        assert secret not in text, text


async def test_a_copy_whose_target_bucket_disappears_fails_and_leaves_the_source_as_it_was(
        api, db, vault, application, seeded, data, regions, source, target, storage, other_storage):  # noqa: F811
    bucket = data.credentials["STORAGE"]["bucket"]
    database = data.credentials["DATABASE"]["database"]

    async def remove_the_target_bucket() -> None:
        """Once the database's copy has begun (so that there is a subscription, a slot, a
        publication and a role to undo), as an operator's mistake or a lost disk would: the
        bucket's next sync fails (in the copy, or, if the bucket was synced first, in the
        cut-over's last one: its initial copy of the rows leaves time to remove it first)."""
        while not await admin(target, "SELECT subname FROM pg_subscription"):  # the initial copy begins
            await asyncio.sleep(0.01)
        async with ObjectStorage(other_storage.endpoint, other_storage.admin_credentials()) as s3:
            await s3.delete_bucket(bucket)

    began = time.monotonic()
    migration = await migrate(api, application, regions)
    removing = asyncio.create_task(remove_the_target_bucket())
    await asyncio.wait_for(removing, TIMEOUT)
    done = await reached(api, migration)
    print(f"\nfailed migration: {time.monotonic() - began:.1f} s, {done['error']}")

    assert done["status"] == "failure" and "storage DEFAULT" in done["error"], done
    for secret in (data.credentials["DATABASE"]["password"], data.credentials["STORAGE"]["secret_key"]):
        assert secret not in done["error"] and secret not in await logs(api, migration)
    assert "Rolled back" in await logs(api, migration)
    await assert_source_as_it_was(api, db, vault, data, seeded, source, storage)
    # What the runner made in the target is gone, or the reason says what is left.
    if "Undoing it also failed" not in done["error"]:
        assert await databases(target, database) == []
        assert not await buckets(other_storage, bucket)
    assert await leftovers(target, database) == {}


async def test_a_cancelled_copy_leaves_the_source_as_it_was(
        api, db, vault, application, seeded, data, regions, source, target, storage, other_storage):  # noqa: F811
    """While the first copy of the rows is under way (here held up: someone's transaction on the
    target keeps its table locked, as a long copy of a big table would take its time): the
    cancel is honoured at once, not when the copy is done (an hour may pass)."""
    database = data.credentials["DATABASE"]["database"]
    began = time.monotonic()
    migration = await migrate(api, application, regions)
    while not (await databases(target, database)
               and await admin(target, "SELECT to_regclass('notes')::text", database=database) == [("notes",)]):
        await asyncio.sleep(0.005)  # the schema restored on the target: its copy comes next
    locker = await asyncpg.connect(target.url(database=database))
    try:
        await locker.execute("BEGIN; LOCK TABLE notes IN EXCLUSIVE MODE")
        copying = await reached(api, migration, "copying")
        assert copying["status"] == "copying", copying
        await asyncio.sleep(1)
        cancelled_at = time.monotonic()
        cancel = await api.post(f"{MIGRATIONS}{migration['uuid']}/cancel/", json={"reason": "not now"})
        assert cancel.status_code == 200, cancel.text
        while (await api.get(f"{MIGRATIONS}{migration['uuid']}/")).json()["ended_at"] is None:
            # The table stays locked until the test ends: a cancel that waited for the copy would
            # never end (a guard against waiting for ever, not a timing).
            assert time.monotonic() - cancelled_at < 120, "the cancel waits for the copy"
            await asyncio.sleep(0.05)
        done = await reached(api, migration)
    finally:
        locker.terminate()
    print(f"\ncancelled migration: {time.monotonic() - began:.1f} s, {time.monotonic() - cancelled_at:.1f} s after "
          "the cancel")

    assert done["status"] == "cancelled" and "not now" in done["error"], done
    await assert_source_as_it_was(api, db, vault, data, seeded, source, storage)
    bucket = data.credentials["STORAGE"]["bucket"]
    assert await databases(target, database) == [] and not await buckets(other_storage, bucket)
    assert await leftovers(target, database) == {}


async def test_after_the_grace_period_the_source_copies_are_deleted(
        api, db, vault, application, seeded, data, regions, source, target, storage, other_storage):  # noqa: F811
    database, bucket = data.credentials["DATABASE"]["database"], data.credentials["STORAGE"]["bucket"]
    migration = await migrate(api, application, regions)
    done = await reached(api, migration)
    assert done["status"] == "success", done
    # Still kept: the grace period (a day in these settings) has not ended.
    await asyncio.sleep(1.5)
    assert await databases(source, database) == [database] and await buckets(storage, bucket)

    async with db() as session, session.begin():
        await session.execute(update(Migration).where(Migration.id == uuid.UUID(migration["uuid"]))
                              .values(grace_until=datetime.now(UTC) - timedelta(seconds=1)))
    began = time.monotonic()
    while await databases(source, database) or await buckets(storage, bucket):
        assert time.monotonic() - began < 60, "the source's detached copies are still there"
        await asyncio.sleep(0.2)
    print(f"\nsource copies deleted {time.monotonic() - began:.1f} s after the grace period ended")

    async with db() as session:
        removed = await session.scalar(select(Migration.source_removed_at).where(
            Migration.id == uuid.UUID(migration["uuid"])))
    assert removed is not None
    assert "grace period over" in await logs(api, migration)
    # The target's copies are the application's now: untouched.
    now_db = await stored_credentials(db, vault, data.instances["DATABASE"]["uuid"])
    conn = await app_connection(target, now_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM notes") == 5 + ROWS
    finally:
        await conn.close()
    assert len(await objects(other_storage, bucket)) == 5


@pytest.fixture
def lost_target():
    """A target region's database server that goes away during the test (its own cluster)."""
    with own_postgres("migration-lost-target") as cluster:
        yield cluster


async def test_a_target_server_lost_during_the_copy_fails_and_leaves_nothing_on_the_source(
        api, db, vault, application, seeded, data, source, storage, other_storage, lost_target, settings):  # noqa: F811
    """The source must not keep a replication slot for a target that is gone: it would hold
    the source's WAL (its disk) for ever."""
    region = await add_target(settings, name="Lost")
    await register(db, vault, region["uuid"], real_servers(lost_target, other_storage))
    database = data.credentials["DATABASE"]["database"]
    began = time.monotonic()
    migration = await migrate(api, application, region)
    while not (await databases(lost_target, database)
               and await admin(lost_target, "SELECT to_regclass('notes')::text", database=database) == [("notes",)]):
        await asyncio.sleep(0.005)
    locker = await asyncpg.connect(lost_target.url(database=database))
    await locker.execute("BEGIN; LOCK TABLE notes IN EXCLUSIVE MODE")  # the copy runs (held up) ...
    copying = await reached(api, migration, "copying")
    assert copying["status"] == "copying", copying
    while not await admin(lost_target, "SELECT subname FROM pg_subscription"):
        await asyncio.sleep(0.01)
    postmaster = int((lost_target.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGINT)  # ... when the target's server goes (fast shutdown)
    locker.terminate()
    done = await reached(api, migration)
    print(f"\nmigration whose target server went: {time.monotonic() - began:.1f} s, {done['error']}")

    assert done["status"] == "failure" and "database DEFAULT" in done["error"], done
    assert data.credentials["DATABASE"]["password"] not in done["error"]
    await assert_source_as_it_was(api, db, vault, data, seeded, source, storage)
    # What is left on the unreachable target is said.
    assert "Undoing it also failed" in done["error"], done["error"]


async def test_a_target_that_cannot_catch_up_in_the_pause_thaws_the_source(
        api, db, vault, application, seeded, data, regions, source, target, storage, other_storage):  # noqa: F811
    """The source was frozen for the cut-over, the target did not apply its last writes in time
    (a lock someone holds on the target's table): the source takes writes again."""
    source_db = data.credentials["DATABASE"]
    database = source_db["database"]
    refused: list[Exception] = []
    running = True

    async def keep_writing() -> None:
        try:
            conn = await app_connection(source, source_db)
            try:
                while running:
                    await conn.execute("INSERT INTO notes (text) VALUES ('during')")
            finally:
                conn.terminate()
        except Exception as e:  # the freeze
            refused.append(e)

    writer = asyncio.create_task(keep_writing())
    began = time.monotonic()
    migration = await migrate(api, application, regions)
    ready = "SELECT count(*) FILTER (WHERE srsubstate = 'r') = count(*) AND count(*) > 0 FROM pg_subscription_rel"
    while not (await databases(target, database) and (await admin(target, ready, database=database))[0][0]):
        await asyncio.sleep(0.005)  # before the runner (it looks every 0.2 s) sees the copy done
    locker = await asyncpg.connect(target.url(database=database))
    try:
        await locker.execute("BEGIN; LOCK TABLE notes IN EXCLUSIVE MODE")
        done = await reached(api, migration)
    finally:
        locker.terminate()
        running = False
        await writer
    print(f"\nmigration whose target could not catch up: {time.monotonic() - began:.1f} s, {done['error']}")

    assert done["status"] == "failure" and "Catching up database DEFAULT" in done["error"], done
    assert refused, "the source was never frozen"
    await assert_source_as_it_was(api, db, vault, data, seeded, source, storage)
    assert await databases(target, database) == [] and await leftovers(target, database) == {}
