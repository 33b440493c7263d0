"""An application's database copied online from one region's PostgreSQL to another's.

The schema goes first (``pg_dump --schema-only``, restored on the target as the application's
role), then PostgreSQL's logical replication copies every table and streams what the
application writes meanwhile: a publication on the source, and on the target a subscription
that connects back to the source as a replication role of the copy's own. At the cut-over the
source is frozen, the target catches up to the source's WAL position, and the sequences, which
logical replication does not carry, are copied.

What logical replication cannot carry makes ``start`` refuse the database instead of losing it
silently: large objects and unlogged tables. Schema changes (DDL) on the source are not carried
either: a table created there during the copy stops the replication until the copy is stopped
(the control panel refuses deployments during a migration).

Every step can be re-run after a crash half way. The replication role's password exists as a
SCRAM verifier on the source and in the subscription's connection string on the target
(``pg_subscription`` is readable by its superuser alone); it never reaches a command line, a
server log or a message. The clusters need ``wal_level=logical`` (servers.PostgresCluster)."""
import asyncio
import json
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from regio_common.scram import scram_verifier

from .database import DatabaseToolFailed, _Admin, _connect, _run_tool, check_name

POLL = 0.2  # seconds between two looks at the replication's state
CATCH_UP_POLL = 0.02  # the same during the cut-over, where every moment is the application's pause
LOCK_TIMEOUT = "10s"  # an ALTER TABLE waiting behind the application's long transaction gives up
SESSION_END_TRIES = 100  # of 50 ms: how long a freeze waits for the application's sessions to end
SLOT_RELEASE_TRIES = 100  # of 50 ms: how long stop waits for a walsender to let go of a slot
PUBLISH_ALL = "insert, update, delete, truncate"
USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
# "host:port", the host a name, an IPv4 address or a bracketed IPv6 one.
ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})")


class CopyFailed(Exception):
    """A step of the copy failed; the message is for a person and holds no secret."""


@dataclass(frozen=True)
class DatabaseCopy:
    name: str  # the publication's, subscription's, slot's and replication role's (e.g. "mig_<hex>")
    source_admin_url: str = field(repr=False)  # superuser URLs: never in a repr or a log line
    target_admin_url: str = field(repr=False)
    database: str  # the same name on both servers
    owner: str  # the application's role on the target: what is restored there is its
    source_address: str  # "host:port" where the target's server reaches the source's

    def __post_init__(self) -> None:
        for value in (self.name, self.database, self.owner):
            check_name(value)
        match = ADDRESS.fullmatch(self.source_address)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"source_address {self.source_address!r} is not host:port")

    @property
    def source_host(self) -> str:
        return ADDRESS.fullmatch(self.source_address)["host"].strip("[]")

    @property
    def source_port(self) -> int:
        return int(ADDRESS.fullmatch(self.source_address)["port"])


@dataclass(frozen=True)
class CopyProgress:
    tables: int  # tables the subscription copies
    tables_copied: int  # of them, copied and now following the source's changes
    lag_bytes: int | None  # WAL written on the source the target has not confirmed (None: no slot)
    errors: int = 0  # apply and copy errors so far (each retried; the target's log has the reason)


# --- the steps ---------------------------------------------------------------------------------


async def start(copy: DatabaseCopy) -> None:
    """Schema copied, replica identities, publication, replication role, subscription. Once the
    subscription exists a re-run only puts back what may be missing on the source: the target's
    copy is never replaced under a running subscription."""
    source, target = _admins(copy)
    async with _failures(copy, "starting the copy"):
        async with _connect(target, copy.database) as conn:
            subscribed = await _subscription_oid(conn, copy.name) is not None
        async with _source_session(source, copy.database) as conn:
            await _refuse_what_cannot_be_copied(conn, copy)
        if not subscribed:
            await _copy_schema(copy, source, target)
        password = None if subscribed else secrets.token_urlsafe(32)
        async with _source_session(source, copy.database) as conn:
            await _publish(conn, copy)
            await _ensure_replication_role(conn, copy, password)
            if not subscribed:
                await _drop_slots(conn, copy)  # an interrupted CREATE SUBSCRIPTION's, which would block ours
        if password is not None:
            async with _connect(target, copy.database) as conn:
                await _subscribe(conn, copy, password)


async def progress(copy: DatabaseCopy) -> CopyProgress:
    source, target = _admins(copy)
    async with _failures(copy, "reading the copy's progress"):
        async with _connect(target, copy.database) as conn:
            if await _subscription_oid(conn, copy.name) is None:
                raise CopyFailed(f"the copy {copy.name} of database {copy.database} is not running on the target")
            tables, copied = await conn.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE r.srsubstate = 'r') FROM pg_subscription_rel r "
                "JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = $1", copy.name)
            errors = await conn.fetchval(
                "SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats "
                "WHERE subname = $1", copy.name)
        async with _connect(source, copy.database) as conn:
            lag = await conn.fetchval(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots "
                "WHERE slot_name = $1", copy.name)
    return CopyProgress(tables=tables, tables_copied=copied, lag_bytes=lag, errors=int(errors))


async def wait_copied(copy: DatabaseCopy, timeout: float) -> None:
    """Until every published table has been copied and follows the source."""
    source, _ = _admins(copy)
    async with _failures(copy, "waiting for the initial copy"):
        async with _connect(source, copy.database) as conn:
            published = await conn.fetchval("SELECT count(*) FROM pg_publication_tables WHERE pubname = $1", copy.name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await progress(copy)
        if state.tables >= published and state.tables_copied == state.tables:
            return
        if loop.time() >= deadline:
            raise CopyFailed(f"the initial copy of database {copy.database} did not finish within {timeout:g}s: "
                             f"{state.tables_copied} of {published} tables copied, {state.errors} errors "
                             "(the target server's log says why)")
        await asyncio.sleep(POLL)


async def freeze_source(copy: DatabaseCopy, app_role: str) -> None:
    """No new transaction can write to the source database, and the application's role can no
    longer connect; its open sessions are ended (what they had not committed is rolled back, so
    nothing lands on the source after this returns). ``thaw_source`` undoes it."""
    check_name(app_role)
    source, _ = _admins(copy)
    async with _failures(copy, "freezing the source database"), _connect(source) as conn:
        await conn.execute(f'ALTER DATABASE "{copy.database}" SET default_transaction_read_only = on')
        await conn.execute(f'REVOKE CONNECT ON DATABASE "{copy.database}" FROM PUBLIC, "{app_role}"')
        for _ in range(SESSION_END_TRIES):
            ending = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                copy.database, app_role)
            if not ending:
                return
            await asyncio.sleep(0.05)  # a terminated session takes a moment to go
        raise CopyFailed(f"the sessions of {app_role} on database {copy.database} did not end")


async def thaw_source(copy: DatabaseCopy, app_role: str) -> None:
    check_name(app_role)
    source, _ = _admins(copy)
    async with _failures(copy, "thawing the source database"), _connect(source) as conn:
        await conn.execute(f'ALTER DATABASE "{copy.database}" RESET default_transaction_read_only')
        await conn.execute(f'GRANT CONNECT ON DATABASE "{copy.database}" TO "{app_role}"')


async def wait_caught_up(copy: DatabaseCopy, timeout: float) -> None:
    """Until the target has applied (and flushed) everything written on the source up to now:
    the slot's confirmed position reaches the source's current WAL position."""
    source, _ = _admins(copy)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with _failures(copy, "waiting for the target to catch up"), _connect(source, copy.database) as conn:
        goal = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        while True:
            reached, lag = await conn.fetchrow(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn, pg_wal_lsn_diff($2::text::pg_lsn, confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = $1", copy.name, goal) or (None, None)
            if reached is None:
                raise CopyFailed(f"the copy {copy.name} has no replication slot on the source")
            if reached:
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(CATCH_UP_POLL)
    errors = (await progress(copy)).errors
    raise CopyFailed(f"the target did not catch up with database {copy.database} within {timeout:g}s "
                     f"({lag} bytes behind"
                     + (f"; {errors} errors applying changes: a table or column the target lacks, made on the "
                        "source during the copy? The target server's log says which)" if errors else ")"))


async def copy_sequences(copy: DatabaseCopy) -> int:
    """Every sequence's position, source -> target (logical replication leaves them at their
    start on the target): the number of sequences set."""
    source, target = _admins(copy)
    async with _failures(copy, "copying the sequences"):
        async with _source_session(source, copy.database) as conn:
            names = [r["name"] for r in await conn.fetch(
                "SELECT format('%I.%I', schemaname, sequencename) AS name FROM pg_sequences ORDER BY 1")]
            values = [await conn.fetchrow(f"SELECT last_value, is_called FROM {name}") for name in names]
        async with _connect(target, copy.database) as conn, conn.transaction():
            for name, (last_value, is_called) in zip(names, values):
                if await conn.fetchval("SELECT to_regclass($1)", name) is None:
                    raise CopyFailed(f"sequence {name} of database {copy.database} is missing on the target")
                await conn.execute("SELECT setval($1::regclass, $2, $3)", name, last_value, is_called)
    return len(names)


async def stop(copy: DatabaseCopy) -> None:
    """Subscription, slots, publication and replication role gone, replica identities put back;
    the data stays on both sides. Stopping what is already stopped succeeds."""
    source, target = _admins(copy)
    async with _failures(copy, "stopping the copy"):
        unreachable = None
        try:
            async with _connect(target, copy.database) as conn:
                await _unsubscribe(conn, copy)
        except asyncpg.InvalidCatalogNameError:
            pass  # the target's database is gone, and its subscription with it
        except (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError,
                asyncpg.ConnectionDoesNotExistError) as e:
            # The target's server is gone: the source's side still goes (a slot left would keep
            # its WAL for ever), and then this fails, saying the target's subscription is left.
            unreachable = e
        try:
            async with _source_session(source, copy.database) as conn:
                await _drop_slots(conn, copy, sync_slots=True)
                await _put_back_replica_identities(conn, copy)
                await conn.execute(f'DROP PUBLICATION IF EXISTS "{copy.name}"')
                await _drop_replication_role(conn, copy)
        except asyncpg.InvalidCatalogNameError:  # the source's database is gone: its slots must not stay
            async with _connect(source) as conn:
                await _drop_slots(conn, copy, sync_slots=False)
                await _drop_replication_role(conn, copy)
        if unreachable is not None:
            raise unreachable


# --- the pieces --------------------------------------------------------------------------------


def _admins(copy: DatabaseCopy) -> tuple[_Admin, _Admin]:
    return _Admin.parse(copy.source_admin_url), _Admin.parse(copy.target_admin_url)


class _failures:
    """Any error of a step becomes CopyFailed naming the step, its text stripped of every
    password the step knows (libpq's and pg_dump's messages carry none, but a URL may be echoed)."""

    def __init__(self, copy: DatabaseCopy, step: str):
        self.step = step
        self.secrets = [a.password for a in _admins(copy) if a.password]

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind, error, tb) -> bool:
        if error is None or isinstance(error, CopyFailed | asyncio.CancelledError) or not isinstance(error, Exception):
            return False
        if isinstance(error, asyncpg.PostgresError | OSError | DatabaseToolFailed | asyncio.TimeoutError
                      | asyncpg.InterfaceError):
            text = str(error) or type(error).__name__
            for secret in self.secrets:
                text = text.replace(secret, "***")
            raise CopyFailed(f"{self.step}: {text}") from None
        return False


class _source_session:
    """A superuser session in the source database that can write to it even while it is frozen
    (its default_transaction_read_only applies to every new session)."""

    def __init__(self, admin: _Admin, database: str):
        self._context = _connect(admin, database)

    async def __aenter__(self) -> asyncpg.Connection:
        conn = await self._context.__aenter__()
        await conn.execute(f"SET default_transaction_read_only = off; SET lock_timeout = '{LOCK_TIMEOUT}'")
        return conn

    async def __aexit__(self, *exc) -> bool | None:
        return await self._context.__aexit__(*exc)


async def _subscription_oid(conn: asyncpg.Connection, name: str) -> int | None:
    return await conn.fetchval(
        "SELECT oid FROM pg_subscription WHERE subname = $1 AND subdbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())", name)


async def _user_tables(conn: asyncpg.Connection, condition: str = "true") -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, c.relpersistence::text AS relpersistence, c.relreplident::text AS relreplident "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'r' AND {USER_SCHEMAS} AND ({condition}) ORDER BY 2")


async def _refuse_what_cannot_be_copied(conn: asyncpg.Connection, copy: DatabaseCopy) -> None:
    large_objects = await conn.fetchval("SELECT count(*) FROM pg_largeobject_metadata")
    if large_objects:
        raise CopyFailed(f"database {copy.database} has {large_objects} large objects, which logical "
                         "replication does not copy")
    unlogged = [t["name"] for t in await _user_tables(conn, "c.relpersistence = 'u'")]
    if unlogged:
        raise CopyFailed(f"database {copy.database} has unlogged tables, which logical replication does not "
                         f"copy: {', '.join(unlogged[:10])}")


async def _copy_schema(copy: DatabaseCopy, source: _Admin, target: _Admin) -> None:
    """The source's schema on the target, every object owned by ``copy.owner``. Loaded in one
    transaction (all or nothing), over whatever an interrupted earlier run restored
    (``--clean``): before the subscription exists the target's tables are empty, and a target
    holding rows is refused rather than wiped."""
    async with _connect(target, copy.database) as conn:
        for table in await _user_tables(conn):
            if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {table['name']})"):
                raise CopyFailed(f"database {copy.database} on the target already holds rows ({table['name']}): "
                                 "it is not overwritten")
    with tempfile.TemporaryDirectory(prefix="regio-schema-") as directory:
        path = Path(directory) / "schema.dump"
        await _run_tool("pg_dump", ["--schema-only", "--format=custom", "--no-publications", "--no-subscriptions",
                                    "--no-tablespaces", "--no-security-labels", f"--file={path}",
                                    f"--dbname={copy.database}"], source)
        await _run_tool("pg_restore", ["--single-transaction", "--exit-on-error", "--clean", "--if-exists",
                                       "--no-owner", "--no-privileges", f"--role={copy.owner}",
                                       f"--dbname={copy.database}", str(path)], target)


async def _publication_note(conn: asyncpg.Connection, name: str) -> dict[str, str] | None:
    """The replica identities the copy changed ({table oid: what it was}), kept as the
    publication's comment so that they go with it and survive a crash; None: no publication."""
    row = await conn.fetchrow("SELECT obj_description(oid, 'pg_publication') AS note FROM pg_publication "
                              "WHERE pubname = $1", name)
    if row is None:
        return None
    try:
        return dict(json.loads(row["note"] or "{}"))
    except ValueError:
        return {}


async def _publish(conn: asyncpg.Connection, copy: DatabaseCopy) -> None:
    """The publication of every table. A table without a primary key (and no other replica
    identity) gets REPLICA IDENTITY FULL first: under a publication that publishes updates its
    UPDATEs and DELETEs would fail. The publication is made publishing nothing, the change is
    noted on it before any table is altered, then it publishes everything, so the application
    never sees a failed write and a crash never loses what is to be put back."""
    if await _publication_note(conn, copy.name) is None:
        try:
            await conn.execute(f"CREATE PUBLICATION \"{copy.name}\" FOR ALL TABLES WITH (publish = '')")
        except asyncpg.DuplicateObjectError:
            pass
    note = await _publication_note(conn, copy.name) or {}
    keyless = await _user_tables(conn, "c.relreplident IN ('d', 'n') AND NOT EXISTS (SELECT FROM pg_index i "
                                       "WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident))")
    for table in keyless:
        note.setdefault(str(table["oid"]), table["relreplident"])
    if keyless:
        await conn.execute(f"COMMENT ON PUBLICATION \"{copy.name}\" IS {_literal(json.dumps(note))}")
    for table in keyless:
        await conn.execute(f"ALTER TABLE {table['name']} REPLICA IDENTITY FULL")
    await conn.execute(f"ALTER PUBLICATION \"{copy.name}\" SET (publish = '{PUBLISH_ALL}')")


async def _put_back_replica_identities(conn: asyncpg.Connection, copy: DatabaseCopy) -> None:
    note = await _publication_note(conn, copy.name) or {}
    for oid, before in note.items():
        if before not in ("d", "n") or not oid.isdigit():
            continue
        name = await conn.fetchval(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = $1::text::oid AND c.relreplident = 'f'", oid)
        if name is not None:  # still as the copy left it (a table dropped since has nothing to put back)
            await conn.execute(f"ALTER TABLE {name} REPLICA IDENTITY {'DEFAULT' if before == 'd' else 'NOTHING'}")


async def _ensure_replication_role(conn: asyncpg.Connection, copy: DatabaseCopy, password: str | None) -> None:
    """The role the target's subscription connects as: it may stream this database's changes
    (REPLICATION) and read its tables for the initial copy (BYPASSRLS: row security must not
    hide rows from the copy), and connect to no other database (CONNECT is granted per database,
    and PUBLIC has none on an environment's). It cannot write anything. ``password``: set a new
    one (None keeps the one the running subscription uses)."""
    try:
        await conn.execute(f'CREATE ROLE "{copy.name}"')
    except asyncpg.DuplicateObjectError:
        pass
    secret = f" PASSWORD '{scram_verifier(password)}'" if password is not None else ""
    await conn.execute(f'ALTER ROLE "{copy.name}" WITH LOGIN REPLICATION BYPASSRLS NOSUPERUSER NOCREATEDB '
                       f"NOCREATEROLE NOINHERIT{secret}")
    await conn.execute(f'GRANT CONNECT ON DATABASE "{copy.database}" TO "{copy.name}"')
    for schema in await conn.fetch(f"SELECT format('%I', n.nspname) AS name FROM pg_namespace n WHERE {USER_SCHEMAS}"):
        await conn.execute(f'GRANT USAGE ON SCHEMA {schema["name"]} TO "{copy.name}"')
        await conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA {schema["name"]} TO "{copy.name}"')


async def _drop_replication_role(conn: asyncpg.Connection, copy: DatabaseCopy) -> None:
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", copy.name):
        return
    await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", copy.name)
    await conn.execute(f'DROP OWNED BY "{copy.name}"')  # its grants here, and CONNECT on the database
    await conn.execute(f'DROP ROLE IF EXISTS "{copy.name}"')


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def _subscribe(conn: asyncpg.Connection, copy: DatabaseCopy, password: str) -> None:
    """The subscription, which creates the slot on the source and starts copying. Its statement
    carries the replication role's password: this session logs no statement, even a failed one.

    ``synchronous_commit``: the target confirms a position to the source only once it is on the
    target's disk; committed synchronously, that is as soon as it is applied, not at the next
    WAL writer round and feedback message, which made the catch-up in the cut-over's pause take
    200-400 ms instead of 10-100 ms (measured with 100k rows and a writing application)."""
    await conn.execute("SET log_min_error_statement = panic; SET log_statement = 'none'; "
                       "SET log_min_duration_statement = -1")
    conninfo = " ".join(f"{key}={_conninfo_value(value)}" for key, value in (
        ("host", copy.source_host), ("port", str(copy.source_port)), ("dbname", copy.database),
        ("user", copy.name), ("password", password), ("connect_timeout", "10"),
        ("application_name", copy.name)))
    try:
        await conn.execute(f'CREATE SUBSCRIPTION "{copy.name}" CONNECTION {_literal(conninfo)} '
                           f'PUBLICATION "{copy.name}" WITH (copy_data = true, create_slot = true, '
                           f"slot_name = '{copy.name}', enabled = true, synchronous_commit = 'on')")
    except asyncpg.PostgresError as error:
        raise CopyFailed(f"creating the subscription on the target: {str(error).replace(password, '***')}") from None


async def _unsubscribe(conn: asyncpg.Connection, copy: DatabaseCopy) -> None:
    """The subscription dropped without the target reaching the source (which may be gone):
    detached from its slot first; the source's slots are dropped there (``_drop_slots``)."""
    if await _subscription_oid(conn, copy.name) is None:
        return
    await conn.execute(f'ALTER SUBSCRIPTION "{copy.name}" DISABLE')
    await conn.execute(f'ALTER SUBSCRIPTION "{copy.name}" SET (slot_name = NONE)')
    await conn.execute(f'DROP SUBSCRIPTION IF EXISTS "{copy.name}"')


async def _drop_slots(conn: asyncpg.Connection, copy: DatabaseCopy, sync_slots: bool = False) -> None:
    """The copy's slot on the source, and with ``sync_slots`` every other logical slot of this
    database: the table copies' (``pg_<subscription>_sync_<table>_<system>``, left behind when a
    subscription goes while a table is being copied), and any made with the copy's replication
    role by whoever read its password on the target (a dedicated region's superuser). A slot
    nobody reads keeps every WAL file of the cluster from then on, until the source's disk is
    full. The application's own roles cannot make slots. A walsender holding one is ended first."""
    query = ("SELECT slot_name, active_pid FROM pg_replication_slots WHERE slot_name = $1"
             + (" OR (database = $2 AND slot_type = 'logical')" if sync_slots else ""))
    args = (copy.name, copy.database) if sync_slots else (copy.name,)
    for _ in range(SLOT_RELEASE_TRIES):
        slots = await conn.fetch(query, *args)
        if not slots:
            return
        for slot in slots:
            if slot["active_pid"] is not None:
                await conn.execute("SELECT pg_terminate_backend($1)", slot["active_pid"])
                continue
            try:
                await conn.execute("SELECT pg_drop_replication_slot($1)", slot["slot_name"])
            except (asyncpg.ObjectInUseError, asyncpg.UndefinedObjectError):
                pass  # taken again, or dropped meanwhile: looked at again below
        await asyncio.sleep(0.05)
    raise CopyFailed(f"the replication slots of copy {copy.name} on the source are still in use")
