"""An application's database copied online between two real PostgreSQL clusters, each a
region's applications' cluster of this module's own (started with the settings Regio gives
its clusters, wal_level=logical among them), while the application keeps writing."""
import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest

from regio_common.processes import wait_for_port
from regio_common.servers import PostgresCluster
from regio_common.testing.plugin import own_postgres
from regio_controlpanel.region_services import database, replication
from regio_controlpanel.region_services.replication import CopyFailed, DatabaseCopy


@pytest.fixture(scope="module")
def source() -> Iterator[PostgresCluster]:
    with own_postgres("replication-source") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def target() -> Iterator[PostgresCluster]:
    with own_postgres("replication-target") as cluster:
        yield cluster


class App:
    """One environment's database, provisioned on both clusters as the platform does, and the
    copy between them."""

    def __init__(self, source: PostgresCluster, target: PostgresCluster, name: str, passwords: dict[str, str]):
        self.source, self.target, self.name, self.passwords = source, target, name, passwords
        self.copy = DatabaseCopy(name=f"mig_{uuid.uuid4().hex[:12]}", source_admin_url=source.url(),
                                 target_admin_url=target.url(), database=name, owner=name,
                                 source_address=f"127.0.0.1:{source.port}")

    async def connect(self, cluster: PostgresCluster) -> asyncpg.Connection:
        """As the application connects: its own role."""
        which = "source" if cluster is self.source else "target"
        return await asyncpg.connect(host="127.0.0.1", port=cluster.port, user=self.name,
                                     password=self.passwords[which], database=self.name)

    async def admin(self, cluster: PostgresCluster, sql: str, *args, database: str | None = None) -> list:
        conn = await asyncpg.connect(cluster.url(database=database or self.name))
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@pytest.fixture
async def app(source, target) -> App:
    name = f"si_{uuid.uuid4().hex[:12]}"
    _, on_source = await database.create_database(source.url(), name)
    _, on_target = await database.create_database(target.url(), name)
    made = App(source, target, name, {"source": on_source, "target": on_target})
    yield made
    await replication.stop(made.copy)
    await database.drop_database(source.url(), name, name)
    await database.drop_database(target.url(), name, name)


SCHEMA = """
CREATE TABLE items (id bigserial PRIMARY KEY, body text NOT NULL);
CREATE TABLE events (kind text, n int);  -- no primary key
CREATE TABLE tags (item_id bigint REFERENCES items (id), tag text, PRIMARY KEY (item_id, tag));
"""


async def fill(app: App, rows: int) -> None:
    conn = await app.connect(app.source)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("INSERT INTO items (body) SELECT 'row ' || g FROM generate_series(1, $1) g", rows)
        await conn.execute("INSERT INTO events SELECT 'k' || (g % 10), g FROM generate_series(1, 1000) g")
        await conn.execute("INSERT INTO tags SELECT id, 'first' FROM items WHERE id <= 100")
    finally:
        await conn.close()


async def contents(app: App, cluster: PostgresCluster) -> dict[str, list]:
    return {table: [tuple(r) for r in await app.admin(cluster, f"SELECT * FROM {table} ORDER BY {order}")]
            for table, order in (("items", "id"), ("events", "kind, n"), ("tags", "item_id, tag"))}


async def slots(app: App) -> list[str]:
    return [r["slot_name"] for r in await app.admin(app.source, "SELECT slot_name FROM pg_replication_slots")]


async def test_writes_during_the_copy_all_arrive_and_sequences_continue(app):
    await fill(app, 100_000)
    writer = await app.connect(app.source)
    began = time.monotonic()
    await replication.start(app.copy)
    started = time.monotonic() - began

    # The application keeps writing while the tables are copied, the key-less one included.
    await writer.execute("UPDATE events SET n = n + 1000000 WHERE kind = 'k1'")
    await writer.execute("DELETE FROM events WHERE kind = 'k2'")
    copying = True

    async def keep_writing() -> int:
        written = 0
        while copying:
            await writer.execute("INSERT INTO items (body) VALUES ($1)", f"during {written}")
            written += 1
        return written

    writing = asyncio.create_task(keep_writing())
    try:
        await replication.wait_copied(app.copy, timeout=120)
    finally:
        copying = False
        written = await writing
    copied = time.monotonic() - began
    assert written > 0
    state = await replication.progress(app.copy)
    assert (state.tables, state.tables_copied, state.errors) == (3, 3, 0), state

    # ... and after it: streamed.
    for i in range(200):
        await writer.execute("INSERT INTO items (body) VALUES ($1)", f"after {i}")
    await writer.execute("UPDATE events SET kind = 'changed' WHERE kind = 'k3'")
    await writer.execute("DELETE FROM events WHERE kind = 'k4' AND n < 500")
    await writer.execute("INSERT INTO tags VALUES (5, 'second')")
    await writer.close()

    frozen = time.monotonic()
    await replication.freeze_source(app.copy, app.name)
    await replication.wait_caught_up(app.copy, timeout=30)
    caught_up = time.monotonic() - frozen
    assert await replication.copy_sequences(app.copy) == 1
    source_rows, target_rows = await contents(app, app.source), await contents(app, app.target)
    assert len(source_rows["items"]) == 100_000 + written + 200
    assert target_rows == source_rows
    print(f"\n100k rows: start {started:.2f}s, copied {copied:.2f}s ({written} rows written meanwhile); "
          f"caught up {caught_up:.3f}s after the freeze")

    # The application, moved to the target, goes on numbering where it left off.
    moved = await app.connect(app.target)
    try:
        new_id = await moved.fetchval("INSERT INTO items (body) VALUES ('in the target') RETURNING id")
        assert new_id == 100_000 + written + 201
    finally:
        await moved.close()

    await replication.stop(app.copy)
    assert app.copy.name not in await slots(app)
    assert not [s for s in await slots(app) if "_sync_" in s]
    assert not await app.admin(app.source, "SELECT 1 FROM pg_publication")
    assert not await app.admin(app.source, "SELECT 1 FROM pg_roles WHERE rolname = $1", app.copy.name)
    assert not await app.admin(app.target, "SELECT 1 FROM pg_subscription")
    # The key-less table's replica identity is put back as it was.
    assert [r["relreplident"] for r in await app.admin(
        app.source, "SELECT relreplident::text AS relreplident FROM pg_class WHERE relname = 'events'")] == ["d"]
    await replication.stop(app.copy)  # stopping again succeeds
    assert await contents(app, app.target) != {}  # the data stays


async def test_start_again_after_a_crash_copies_each_row_once(app):
    await fill(app, 1000)
    await replication.start(app.copy)
    await replication.start(app.copy)  # re-run: nothing replaced, nothing duplicated
    await replication.wait_copied(app.copy, timeout=60)
    await replication.wait_caught_up(app.copy, timeout=30)
    assert await contents(app, app.target) == await contents(app, app.source)
    assert await slots(app) == [app.copy.name]


async def test_an_update_of_a_table_without_a_primary_key_works_under_the_copy(app):
    await fill(app, 10)
    await replication.start(app.copy)
    conn = await app.connect(app.source)
    try:
        # Without REPLICA IDENTITY FULL this fails: "cannot update table "events" because it
        # does not have a replica identity and publishes updates".
        await conn.execute("UPDATE events SET n = -n WHERE kind = 'k5'")
        await conn.execute("DELETE FROM events WHERE kind = 'k6'")
    finally:
        await conn.close()
    await replication.wait_copied(app.copy, timeout=60)
    await replication.wait_caught_up(app.copy, timeout=30)
    assert await contents(app, app.target) == await contents(app, app.source)


async def test_freeze_makes_a_write_fail_and_thaw_makes_it_work_again(app):
    await fill(app, 10)
    await replication.start(app.copy)
    session = await app.connect(app.source)  # open before the freeze: ended by it
    await replication.freeze_source(app.copy, app.name)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
        await session.execute("INSERT INTO items (body) VALUES ('lost')")
    with pytest.raises(asyncpg.PostgresError):
        await app.connect(app.source)  # and no new one gets in
    # Not even the superuser's new sessions write by default.
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await app.admin(app.source, "INSERT INTO items (body) VALUES ('lost')")
    await replication.freeze_source(app.copy, app.name)  # again: idempotent

    await replication.thaw_source(app.copy, app.name)
    conn = await app.connect(app.source)
    try:
        await conn.execute("INSERT INTO items (body) VALUES ('kept')")
    finally:
        await conn.close()
    assert await app.admin(app.source, "SELECT 1 FROM items WHERE body = 'kept'")


async def test_stop_with_the_source_unreachable_from_the_target_leaves_no_slot(app, source):
    await fill(app, 10)
    await replication.start(app.copy)
    # A subscription whose publisher went away: stop must not need the target to reach it.
    await app.admin(app.target, f'ALTER SUBSCRIPTION "{app.copy.name}" CONNECTION '
                                "'host=127.0.0.1 port=1 dbname=x user=x'")
    await replication.stop(app.copy)
    assert await slots(app) == []
    assert not await app.admin(app.target, "SELECT 1 FROM pg_subscription")


async def test_errors_carry_no_password(app, source, target):
    await fill(app, 10)
    unreachable = DatabaseCopy(name=app.copy.name, source_admin_url=source.url(), target_admin_url=target.url(),
                               database=app.name, owner=app.name, source_address="127.0.0.1:1")
    with pytest.raises(CopyFailed) as failed:
        await replication.start(unreachable)
    message = str(failed.value)
    assert "subscription" in message
    for secret in (source.superuser_password(), target.superuser_password(), *app.passwords.values()):
        assert secret not in message
        assert secret not in repr(unreachable)  # a copy logged by its caller shows no admin URL
    assert "password=" not in message
    # The failed CREATE SUBSCRIPTION, which carries the replication role's password, is not in
    # the target server's log either.
    log = (target.state_dir / "logs" / f"{target.name}.log").read_text()
    assert "CREATE SUBSCRIPTION" not in log and "password=" not in log
    await replication.stop(unreachable)

    wrong = "not-the-password-" + uuid.uuid4().hex
    refused = DatabaseCopy(name=app.copy.name, source_admin_url=source.url(password=wrong),
                           target_admin_url=target.url(), database=app.name, owner=app.name,
                           source_address=app.copy.source_address)
    with pytest.raises(CopyFailed) as failed:
        await replication.start(refused)
    assert wrong not in str(failed.value)


async def test_the_replication_role_reads_the_copied_database_and_nothing_else(app, source, tmp_path):
    """The role's password sits in the target's catalog: with it, another environment's database
    on the source stays closed, and the copied one cannot be written."""
    await fill(app, 10)
    _, other_password = await database.create_database(source.url(), "si_neighbour")
    await replication.start(app.copy)
    conninfo = (await app.admin(app.target, "SELECT subconninfo FROM pg_subscription"))[0]["subconninfo"]
    password = re.search(r"password='([^']*)'", conninfo)[1]

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(host="127.0.0.1", port=source.port, user=app.copy.name, password=password,
                              database="si_neighbour")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(host="127.0.0.1", port=source.port, user=app.copy.name, password=password,
                              database="postgres")
    conn = await asyncpg.connect(host="127.0.0.1", port=source.port, user=app.copy.name, password=password,
                                 database=app.name)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO items (body) VALUES ('forged')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE planted (x int)")
    finally:
        await conn.close()
    await database.drop_database(source.url(), "si_neighbour", "si_neighbour")
    # Nor a physical copy of the whole cluster, every organisation's databases in it: the role
    # has REPLICATION, which a base backup needs, but the cluster refuses physical replication.
    backup = subprocess.run([PostgresCluster.bin("pg_basebackup"), "--no-password", "--host=127.0.0.1",
                             f"--port={source.port}", f"--username={app.copy.name}", f"--pgdata={tmp_path / 'all'}",
                             "--wal-method=none"], env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert backup.returncode != 0 and "pg_hba.conf rejects replication connection" in backup.stderr, backup.stderr
    assert not (tmp_path / "all" / "base").exists()

    await replication.stop(app.copy)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=source.port, user=app.copy.name, password=password,
                              database=app.name)


async def test_a_target_holding_rows_is_not_overwritten(app):
    await fill(app, 10)
    conn = await app.connect(app.target)
    try:
        await conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, body text NOT NULL)")
        await conn.execute("INSERT INTO items (body) VALUES ('precious')")
    finally:
        await conn.close()
    with pytest.raises(CopyFailed, match="already holds rows"):
        await replication.start(app.copy)
    assert await app.admin(app.target, "SELECT body FROM items") == [("precious",)]


async def test_large_objects_are_refused_not_lost(app):
    await fill(app, 10)
    conn = await app.connect(app.source)
    try:
        await conn.execute("SELECT lo_from_bytea(0, 'a picture')")
    finally:
        await conn.close()
    with pytest.raises(CopyFailed, match="large objects"):
        await replication.start(app.copy)
    assert await slots(app) == []


async def test_unlogged_tables_are_refused_not_lost(app):
    await fill(app, 10)
    conn = await app.connect(app.source)
    try:
        await conn.execute("CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text); INSERT INTO cache VALUES ('a', 'b')")
    finally:
        await conn.close()
    with pytest.raises(CopyFailed, match="unlogged tables.*cache"):
        await replication.start(app.copy)
    assert await slots(app) == []


def test_names_and_addresses_are_checked(source, target):
    for bad in ({"name": "mig_x; DROP"}, {"database": "postgres"}, {"owner": "pg_monitor"},
                {"source_address": "127.0.0.1"}, {"source_address": "h'x:5432"}, {"source_address": "h:99999"}):
        with pytest.raises(ValueError):
            DatabaseCopy(**{"name": "mig_a", "source_admin_url": source.url(), "target_admin_url": target.url(),
                            "database": "si_a", "owner": "si_a", "source_address": "127.0.0.1:5432", **bad})


async def test_the_clusters_regio_starts_can_be_copied_from(source):
    conn = await asyncpg.connect(source.url())
    try:
        assert await conn.fetchval("SHOW wal_level") == "logical"
    finally:
        await conn.close()


def test_a_cluster_started_before_wal_level_logical_is_told_apart_and_restarts_with_it():
    """A region upgraded in place: its running cluster keeps the settings it started with,
    which `regio up` must notice (ManagedProcess.start leaves a running server alone)."""
    with own_postgres("replication-upgraded") as cluster:
        assert not cluster.started_with_other_settings()
        process = cluster.process()
        process.stop()
        older = [a for a in process.argv if a != "wal_level=logical"][:-1]  # and its "-c"
        replace(process, argv=older).start()
        wait_for_port(cluster.port, 30)
        cluster.wait_ready()
        assert cluster.psql("SHOW wal_level").stdout.strip() == "replica"
        assert not process.start()  # running: left as it is
        assert cluster.started_with_other_settings()

        process.stop()
        process.start()
        wait_for_port(cluster.port, 30)
        cluster.wait_ready()
        assert cluster.psql("SHOW wal_level").stdout.strip() == "logical"
        assert not cluster.started_with_other_settings()


async def test_a_table_made_on_the_source_during_the_copy_fails_the_catch_up_with_its_reason(app):
    """Schema changes are not replicated: the copy cannot go on, and says why rather than hang."""
    await fill(app, 10)
    await replication.start(app.copy)
    await replication.wait_copied(app.copy, timeout=60)
    conn = await app.connect(app.source)
    try:
        await conn.execute("CREATE TABLE later (id int PRIMARY KEY); INSERT INTO later VALUES (1)")
    finally:
        await conn.close()
    with pytest.raises(CopyFailed, match="errors applying changes"):
        await replication.wait_caught_up(app.copy, timeout=3)
    await replication.stop(app.copy)
    assert await slots(app) == []
