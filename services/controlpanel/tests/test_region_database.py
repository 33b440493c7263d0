"""Environments' databases on a real application database cluster, a second PostgreSQL
of this module's own (the platform's cluster is never used for applications)."""
import asyncpg
import pytest

from regio_common.servers import PostgresCluster
from regio_controlpanel.region_services import database
from regio_controlpanel.region_services.database import DatabaseToolFailed, check_name


@pytest.fixture(scope="module")
def admin_url(apps_cluster) -> str:
    return apps_cluster.url()


async def connect(cluster: PostgresCluster, role: str, password: str, name: str) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=cluster.port, user=role, password=password, database=name)


async def admin_fetchval(admin_url: str, sql: str, *args):
    conn = await asyncpg.connect(admin_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_an_environment_role_works_in_its_own_database(apps_cluster, admin_url):
    role, password = await database.create_database(admin_url, "env_own")

    conn = await connect(apps_cluster, role, password, "env_own")
    try:
        await conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        await conn.execute("INSERT INTO notes (body) VALUES ('hello')")
        assert await conn.fetchval("SELECT body FROM notes") == "hello"
        assert not await conn.fetchval("SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles "
                                       "WHERE rolname = current_user")
    finally:
        await conn.close()


async def test_another_environment_role_cannot_connect(apps_cluster, admin_url):
    await database.create_database(admin_url, "env_private")
    intruder, password = await database.create_database(admin_url, "env_intruder")

    for elsewhere in ("env_private", "postgres", "template1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await connect(apps_cluster, intruder, password, elsewhere)


async def test_provisioning_again_succeeds_and_only_the_new_password_is_valid(apps_cluster, admin_url):
    role, first = await database.create_database(admin_url, "env_retried")
    conn = await connect(apps_cluster, role, first, "env_retried")
    await conn.execute("CREATE TABLE kept (id int)")
    await conn.close()

    again, second = await database.create_database(admin_url, "env_retried")

    assert again == role
    with pytest.raises(asyncpg.InvalidPasswordError):
        await connect(apps_cluster, role, first, "env_retried")
    conn = await connect(apps_cluster, role, second, "env_retried")
    try:
        assert await conn.fetchval("SELECT count(*) FROM kept") == 0  # the database was kept, not recreated
    finally:
        await conn.close()


async def test_drop_removes_the_database_and_its_role_even_while_connected(apps_cluster, admin_url):
    role, password = await database.create_database(admin_url, "env_gone")
    conn = await connect(apps_cluster, role, password, "env_gone")

    await database.drop_database(admin_url, "env_gone", role)

    assert not await _still_answers(conn)  # its session was ended
    assert await admin_fetchval(admin_url, "SELECT count(*) FROM pg_database WHERE datname = 'env_gone'") == 0
    assert await admin_fetchval(admin_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'env_gone'") == 0
    await database.drop_database(admin_url, "env_gone", role)  # already gone: still succeeds


async def _still_answers(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
        return True
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return False


async def test_restore_gives_back_the_dumped_state(apps_cluster, admin_url, tmp_path):
    role, password = await database.create_database(admin_url, "env_backup")
    conn = await connect(apps_cluster, role, password, "env_backup")
    await conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
    await conn.execute("INSERT INTO items VALUES (1), (2)")
    await conn.close()

    dump_file = await database.dump(admin_url, "env_backup", tmp_path / "env_backup.dump")
    conn = await connect(apps_cluster, role, password, "env_backup")
    await conn.execute("INSERT INTO items VALUES (3)")
    await conn.execute("CREATE TABLE added_after (id int)")
    await conn.close()

    await database.restore(admin_url, "env_backup", role, dump_file)

    conn = await connect(apps_cluster, role, password, "env_backup")
    try:
        assert [r["id"] for r in await conn.fetch("SELECT id FROM items ORDER BY id")] == [1, 2]
        assert await conn.fetchval("SELECT to_regclass('added_after')") is None
    finally:
        await conn.close()


async def test_restore_into_another_environment_hands_it_the_tables(apps_cluster, admin_url, tmp_path):
    source, source_password = await database.create_database(admin_url, "env_source")
    conn = await connect(apps_cluster, source, source_password, "env_source")
    await conn.execute("CREATE TABLE pages (slug text PRIMARY KEY)")
    await conn.execute("INSERT INTO pages VALUES ('home')")
    await conn.close()
    target, target_password = await database.create_database(admin_url, "env_target")

    dump_file = await database.dump(admin_url, "env_source", tmp_path / "env_source.dump")
    await database.restore(admin_url, "env_target", target, dump_file)

    conn = await connect(apps_cluster, target, target_password, "env_target")
    try:
        assert await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'pages'") == target
        await conn.execute("INSERT INTO pages VALUES ('about')")
        assert await conn.fetchval("SELECT count(*) FROM pages") == 2
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await connect(apps_cluster, source, source_password, "env_target")


async def test_a_failed_restore_leaves_the_database_as_it_was(apps_cluster, admin_url, tmp_path):
    role, password = await database.create_database(admin_url, "env_intact")
    conn = await connect(apps_cluster, role, password, "env_intact")
    await conn.execute("CREATE TABLE items (id int)")
    await conn.execute("INSERT INTO items VALUES (1)")
    await conn.close()
    not_a_dump = tmp_path / "truncated.dump"
    not_a_dump.write_bytes(b"PGDMP")

    with pytest.raises(DatabaseToolFailed, match="pg_restore"):
        await database.restore(admin_url, "env_intact", role, not_a_dump)

    conn = await connect(apps_cluster, role, password, "env_intact")
    try:
        assert await conn.fetchval("SELECT count(*) FROM items") == 1
    finally:
        await conn.close()


async def test_dumping_a_missing_database_fails_without_leaving_a_file(admin_url, tmp_path):
    path = tmp_path / "missing.dump"

    with pytest.raises(DatabaseToolFailed, match="pg_dump"):
        await database.dump(admin_url, "env_never_made", path)

    assert not path.exists()


@pytest.mark.parametrize("name", ["", "Env", "env-a", "1env", "_env", "pg_env", "postgres", "template1",
                                  "env a", 'env"; DROP ROLE postgres; --', "e" * 64])
def test_names_outside_the_platform_alphabet_are_refused(name):
    with pytest.raises(ValueError):
        check_name(name)


def test_the_longest_name_postgres_keeps_whole_is_accepted():
    assert check_name("e" * 63) == "e" * 63
