"""pytest fixtures for the real servers: PostgreSQL and NATS with JetStream.

A running region's PostgreSQL (found through ``.regio/region.json``) is reused for
speed, each test module getting its own database; with none running, the fixture
starts its own on a free port under a temporary directory and stops it at the end
of the session. NATS is always the session's own, and lets in only its users (nats_auth):
``nats_url`` carries the admin's credentials, for tests and fixtures that play the whole
region; ``nats_credentials`` gives a test's components users of their own, limited as a
region's are."""
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from .. import bus, nats_auth
from ..layout import Layout, default_state_dir
from ..processes import ManagedProcess, free_port, wait_for_port  # noqa: F401 (free_port: for the tests)
from ..servers import PostgresCluster, nats_process


@contextmanager
def own_postgres(name: str, umask: int | None = None) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the caller's own, removed afterwards. Its directory is outside
    pytest's private (0700) temp tree, which PostgreSQL (an unprivileged account) would have to
    pass through: a chmod of those parents was undone mid-session once. ``umask``: the one the
    cluster is started under."""
    state = Path(tempfile.mkdtemp(prefix=f"regio-{name}-"))
    state.chmod(0o755)
    cluster = PostgresCluster(name, state, free_port())
    previous = os.umask(umask) if umask is not None else None
    try:
        cluster.ensure_initialized()
        process = cluster.process()
        process.start()
    finally:
        if previous is not None:
            os.umask(previous)
    try:
        wait_for_port(cluster.port, 30, process=process)
        cluster.wait_ready()
        yield cluster
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)


def _running_region() -> Layout | None:
    return Layout.load(default_state_dir())


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    layout = _running_region()
    if layout is not None:
        cluster = PostgresCluster("postgres", layout.state_dir, layout.ports.postgres)
        if cluster.process().running():
            yield cluster
            return
    with own_postgres("postgres") as cluster:
        yield cluster


@dataclass
class SessionNats:
    """The session's NATS server and its users: the admin's, and each test region's components'."""

    process: ManagedProcess
    config: Path
    passwords: dict[str, str] = field(default_factory=dict)
    users: dict[str, nats_auth.User] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Without credentials: a service under test is given its user and password besides."""
        return f"nats://127.0.0.1:{self.process.port}"

    @property
    def admin_url(self) -> str:
        return f"nats://{nats_auth.ADMIN}:{quote(self.password_of(nats_auth.ADMIN), safe='')}@127.0.0.1:{self.process.port}"

    def password_of(self, user: str) -> str:
        return self.passwords.setdefault(user, secrets.token_urlsafe(18))

    def write(self) -> bool:
        return nats_auth.write_config(self.config, nats_auth.hub_config(list(self.users.values())))

    async def add_region(self, region: str, runners: list[str], hollow_fleet: bool = False) -> dict[str, tuple[str, str]]:
        """Users for ``region``'s services and ``runners`` (named after the region, which is a
        test's own), and its hollow fleet's if asked; the server reloads and lets them in
        before this returns."""
        made = nats_auth.users(region, runners, self.password_of, hollow_fleet=hollow_fleet, admin=False,
                               user_prefix=f"{region}-")
        new = [user for user in made if user.name not in self.users]
        for user in made:
            self.users[user.name] = user
        if new and self.write():
            nats_auth.reload(self.process.pid())
            await self._wait_let_in(new[-1])
        components = [*nats_auth.SERVICES, *runners, *([nats_auth.HOLLOW_FLEET] if hollow_fleet else [])]
        return {c: (f"{region}-{c}", self.password_of(f"{region}-{c}")) for c in components}

    def forget_region(self, region: str) -> None:
        """Its users go at the next reload: a session's configuration stays small."""
        for name in [n for n in self.users if n.startswith(f"{region}-")]:
            del self.users[name]

    async def _wait_let_in(self, user: nats_auth.User) -> None:
        import nats

        for _ in range(100):
            try:
                nc = await nats.connect(self.url, user=user.name, password=user.password, allow_reconnect=False,
                                        max_reconnect_attempts=0, connect_timeout=1,
                                        inbox_prefix=bus.inbox_prefix(user.name))
            except Exception:
                await asyncio.sleep(0.05)
                continue
            await nc.close()
            return
        raise TimeoutError(f"NATS did not let {user.name} in after its reload")


@pytest.fixture(scope="session")
def session_nats(tmp_path_factory) -> Iterator[SessionNats]:
    """Always a NATS server of the test session's own: it starts in a blink, and the
    consumers tests create never pile up in a running region's server."""
    state = tmp_path_factory.mktemp("nats")
    config = state / "secrets" / "nats.conf"
    server = SessionNats(nats_process(state, free_port(), config), config)
    server.users[nats_auth.ADMIN] = nats_auth.User(nats_auth.ADMIN, server.password_of(nats_auth.ADMIN), None)
    server.write()
    server.process.start()
    wait_for_port(server.process.port, 30, process=server.process)
    yield server
    server.process.stop()
    # A refused publish or subscription is only logged, by the client and the server: a
    # component whose permissions miss something it does would pass its tests unnoticed.
    refused = [line for line in server.process.log_path.read_text(errors="replace").splitlines()
               if "Violation" in line]
    assert not refused, "NATS refused what a component under test did (nats_auth misses a permission):\n" + \
        "\n".join(refused[:20])


@pytest.fixture(scope="session")
def nats_url(session_nats) -> str:
    """The session's NATS, as its admin (who may do everything)."""
    return session_nats.admin_url


@pytest.fixture
def nats_credentials(session_nats):
    """``await nats_credentials(region, runners)``: component -> (user, password) of the
    region's services and runners, each limited as nats_auth says; connect to
    ``session_nats.url`` with them. Forgotten after the test."""
    regions: set[str] = set()

    async def credentials(region: str, runners: list[str], hollow_fleet: bool = False) -> dict[str, tuple[str, str]]:
        regions.add(region)
        return await session_nats.add_region(region, runners, hollow_fleet)

    yield credentials
    for region in regions:
        session_nats.forget_region(region)


@pytest.fixture(scope="session")
def migrated_database(postgres_cluster):
    """Factory: a new database with one service's migrations applied (the real
    ``alembic upgrade head``); dropped at the end of the session."""
    created: list[str] = []

    def make(alembic_ini: Path, env_prefix: str) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        _psql(postgres_cluster, f'CREATE DATABASE "{name}"', check=True)
        created.append(name)
        url = postgres_cluster.url(name, driver="postgresql+asyncpg")
        env = {**os.environ, f"{env_prefix}DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "alembic", "-c", str(alembic_ini), "upgrade", "head"],
                       check=True, env=env)
        return url

    yield make
    for name in created:
        _psql(postgres_cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _psql(cluster: PostgresCluster, sql: str, check: bool = False) -> None:
    cluster.psql(sql, check=check)
