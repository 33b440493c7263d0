"""Environments' databases on the region's application database cluster.

Each environment gets a database and a login role of the same name that owns it. CONNECT
on the database is the owner's alone, and the cluster's shared databases (``postgres``,
``template1``) are closed to PUBLIC, so an environment's role can connect to its own
database and nowhere else. Cluster-wide catalogs stay readable by every role, as in any
PostgreSQL: a role can list other databases' and roles' names (``pg_database``,
``pg_roles``) and see that other sessions exist (``pg_stat_activity``, without their
queries), but cannot read another database's data.

The control panel calls these as the cluster's superuser (``admin_url``, a libpq or
SQLAlchemy URL over loopback). Every step can be re-run after a crash half way: a retried
provisioning never fails on "already exists"."""
import asyncio
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from regio_common.scram import scram_verifier
from regio_common.servers import client_command

# A leading letter keeps names apart from the restore scratch databases (leading "_"), and
# "pg_" is PostgreSQL's own prefix for roles.
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
RESERVED = {"postgres", "template0", "template1"}
SHARED_DATABASES = ("postgres", "template1")  # template0 already refuses connections


class DatabaseToolFailed(RuntimeError):
    """pg_dump or pg_restore exited with an error (its message, never a password, is kept)."""


SESSION_END_TRIES = 100  # of 50 ms: how long a restore waits for the old database's sessions to end


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.startswith("pg_") or name in RESERVED:
        raise ValueError(f"{name!r} is not a valid database or role name: "
                         "a lowercase letter, then up to 62 of a-z, 0-9, _; not pg_*, postgres or template*")
    return name


@dataclass(frozen=True)
class _Admin:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def parse(cls, admin_url: str) -> "_Admin":
        url = make_url(admin_url)  # also takes SQLAlchemy's postgresql+asyncpg:// form
        return cls(url.host or "127.0.0.1", url.port or 5432, url.username or "postgres", url.password or "")


@asynccontextmanager
async def _connect(admin: _Admin, database: str = "postgres") -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(host=admin.host, port=admin.port, user=admin.user, password=admin.password,
                                 database=database, timeout=30)
    try:
        yield conn
    finally:
        await conn.close()


def _retired(name: str) -> str:
    """What a restored database's old self is renamed to until it is dropped."""
    return "_retired_" + hashlib.sha256(name.encode()).hexdigest()[:32]


async def _swap_in(conn: asyncpg.Connection, scratch: str, name: str) -> None:
    """``scratch`` takes the place of database ``name``, which is missing only between two renames
    (dropping it first would take as long as removing its files). Renaming needs the old one free
    of sessions: new ones are refused, the open ones ended, and what the refusal leaves is undone
    if the swap fails."""
    retired = _retired(name)
    await conn.execute(f'DROP DATABASE IF EXISTS "{retired}" WITH (FORCE)')  # an interrupted swap's
    if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        await conn.execute(f'ALTER DATABASE "{scratch}" RENAME TO "{name}"')
        return
    await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        for _ in range(SESSION_END_TRIES):
            ending = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", name)
            if not ending:
                break
            await asyncio.sleep(0.05)  # a terminated session takes a moment to go
        await conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{retired}"')
    except BaseException:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        raise
    await conn.execute(f'ALTER DATABASE "{scratch}" RENAME TO "{name}"')
    await conn.execute(f'DROP DATABASE "{retired}" WITH (FORCE)')


def _restore_scratch(name: str) -> str:
    """Where a restore is loaded before it replaces the database: deterministic, so a retry
    finds an interrupted attempt's leftover, and never a valid environment name."""
    return "_restore_" + hashlib.sha256(name.encode()).hexdigest()[:32]


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    try:
        await conn.execute(f'CREATE ROLE "{role}"')
    except asyncpg.DuplicateObjectError:
        pass  # an earlier attempt got this far: its password is replaced below
    await conn.execute(f'ALTER ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                       f"NOBYPASSRLS PASSWORD '{scram_verifier(password)}'")


async def _ensure_database(conn: asyncpg.Connection, name: str, owner: str) -> None:
    """The database owned by ``owner``, connectable by it alone. It is created refusing all
    connections and opened only once PUBLIC has lost CONNECT, so no other role ever gets in,
    even when a crash leaves it half set up."""
    if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        try:
            await conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}" ALLOW_CONNECTIONS false')
        except asyncpg.DuplicateDatabaseError:
            pass
    await conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{owner}"')
    await conn.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
    await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{owner}"')
    await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def create_database(admin_url: str, name: str) -> tuple[str, str]:
    """Provision ``name``: returns (role, password) for the environment's DATABASE_URL.

    The role is named like the database. Re-running for the same name succeeds and sets a
    new password: the credentials returned by the last run are the valid ones."""
    check_name(name)
    role = name
    password = secrets.token_urlsafe(32)  # URL-safe: it goes into DATABASE_URL as is
    async with _connect(_Admin.parse(admin_url)) as conn:
        for shared in SHARED_DATABASES:
            await conn.execute(f'REVOKE ALL ON DATABASE "{shared}" FROM PUBLIC')
        await _ensure_role(conn, role, password)
        await _ensure_database(conn, name, role)
    return role, password


async def drop_database(admin_url: str, name: str, role: str) -> None:
    """Remove the database (its sessions terminated by ``WITH (FORCE)``), an interrupted
    restore's scratch copy, then the role. Dropping what is already gone succeeds."""
    check_name(name)
    check_name(role)
    async with _connect(_Admin.parse(admin_url)) as conn:
        for database in (name, _restore_scratch(name)):
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')


async def database_sizes(admin_url: str, names: list[str]) -> dict[str, int]:
    """The size on disk, in bytes, of each of ``names`` that exists (billing's storage samples)."""
    async with _connect(_Admin.parse(admin_url)) as conn:
        rows = await conn.fetch("SELECT datname, pg_database_size(datname) AS size FROM pg_database "
                                "WHERE datname = ANY($1::text[])", [check_name(n) for n in names])
    return {row["datname"]: row["size"] for row in rows}


async def _run_tool(tool: str, args: list[str], admin: _Admin) -> None:
    """Run one of the cluster's own client binaries without blocking the event loop (the
    password in its environment, never on its command line: ``client_command``)."""
    argv, env = client_command(tool, admin.host, admin.port, admin.user, admin.password, *args)
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await process.communicate()
    except BaseException:  # cancelled: the tool must not outlive the step that ran it
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise DatabaseToolFailed(f"{tool} exited with {process.returncode}: "
                                 f"{stderr.decode(errors='replace').strip()[-4000:]}")


async def dump(admin_url: str, name: str, path: Path) -> Path:
    """Write database ``name`` to ``path`` in pg_dump's custom format (``-Fc``: compressed,
    restorable selectively). A failed dump leaves no file behind."""
    check_name(name)
    try:
        await _run_tool("pg_dump", ["--format=custom", f"--file={path}", f"--dbname={name}"],
                        _Admin.parse(admin_url))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def restore(admin_url: str, name: str, role: str, dump_file: Path) -> None:
    """Replace database ``name`` with the contents of ``dump_file`` (from ``dump``, possibly
    of another environment's database), everything ending up owned by ``role``.

    The dump is loaded into a fresh scratch database which then takes the database's place,
    so the result is exactly the dumped state (no table created since the dump survives),
    and a restore that fails leaves the database as it was. Taking its place ends the
    database's open sessions, as any restore under a running application must.

    ``--no-owner --role`` makes pg_restore create every object as ``role``; ``--no-privileges``
    leaves out GRANTs and default privileges naming the dumped environment's role, which does
    not exist here or is another environment's (only the owner can connect anyway)."""
    check_name(name)
    check_name(role)
    admin = _Admin.parse(admin_url)
    scratch = _restore_scratch(name)
    async with _connect(admin) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')  # an interrupted attempt's
        await _ensure_database(conn, scratch, role)
    try:
        await _run_tool("pg_restore", ["--exit-on-error", "--no-owner", "--no-privileges", f"--role={role}",
                                       f"--dbname={scratch}", str(dump_file)], admin)
    except BaseException:
        async with _connect(admin) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        raise
    async with _connect(admin) as conn:
        await _swap_in(conn, scratch, name)
