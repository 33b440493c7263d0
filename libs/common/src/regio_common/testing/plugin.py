"""pytest fixtures for the real servers: PostgreSQL and NATS with JetStream.

A running region's PostgreSQL (found through ``.regio/region.json``) is reused for
speed, each test module getting its own database; with none running, the fixture
starts its own on a free port under a temporary directory and stops it at the end
of the session. NATS is always the session's own."""
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..layout import Layout, default_state_dir
from ..processes import ManagedProcess, free_port, wait_for_port  # noqa: F401 (free_port: for the tests)
from ..servers import PostgresCluster, nats_process


def _running_region() -> Layout | None:
    return Layout.load(default_state_dir())


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory) -> Iterator[PostgresCluster]:
    layout = _running_region()
    if layout is not None:
        cluster = PostgresCluster("postgres", layout.state_dir, layout.ports.postgres)
        if cluster.process().running():
            yield cluster
            return
    state = tmp_path_factory.mktemp("pg")
    os.chmod(state, 0o755)
    # Run as root, Postgres runs as an unprivileged user, who must be able to pass through
    # pytest's private (0700) temp directories to reach its own.
    for parent in state.parents:
        if parent == Path(tmp_path_factory.getbasetemp()).parent.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    cluster = PostgresCluster("postgres", state, free_port())
    cluster.ensure_initialized()
    process = cluster.process()
    process.start()
    wait_for_port(cluster.port, 30, process=process)
    cluster.wait_ready()
    yield cluster
    process.stop()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory) -> Iterator[str]:
    """Always a NATS server of the test session's own: it starts in a blink, and the
    consumers tests create never pile up in a running region's server."""
    state = tmp_path_factory.mktemp("nats")
    process: ManagedProcess = nats_process(state, free_port())
    process.start()
    wait_for_port(process.port, 30, process=process)
    yield f"nats://127.0.0.1:{process.port}"
    process.stop()


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
