"""A local account cannot get into the region's PostgreSQL clusters without a password, and
no password ever shows on a command line while the platform talks to them.

Every cluster here is the test's own, made by the same code `regio up` runs
(``PostgresCluster``), under the umask a developer's shell has (022)."""
import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regio_cli import database as platform_database
from regio_common.servers import PostgresCluster
from regio_common.testing import plugin
from regio_controlpanel.region_services import database as apps_database

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another account and tries as nobody")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    # Started under the usual umask: its socket directory must still come out private.
    with plugin.own_postgres("postgres", umask=0o022) as cluster:
        yield cluster


def psql_without_password(cluster: PostgresCluster, host: str, as_user: str | None = None,
                          role: str = "postgres") -> subprocess.CompletedProcess:
    """What any local process can try: connect as ``role`` with no password at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    argv = [cluster.bin("psql"), "--no-password", f"--host={host}", f"--port={cluster.port}",
            f"--username={role}", "--dbname=postgres", "--tuples-only", "--command=SELECT 'in'"]
    if as_user:
        argv = ["runuser", "-u", as_user, "--", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def refused(result: subprocess.CompletedProcess) -> bool:
    return result.returncode != 0 and "in" not in result.stdout


def test_root_without_the_password_is_refused_on_the_socket_and_over_tcp(cluster):
    assert refused(psql_without_password(cluster, str(cluster.socket_dir)))
    assert refused(psql_without_password(cluster, "127.0.0.1"))


def test_another_account_without_the_password_is_refused_on_the_socket_and_over_tcp(cluster):
    on_socket = psql_without_password(cluster, str(cluster.socket_dir), as_user="nobody")
    assert refused(on_socket)
    assert "Permission denied" in on_socket.stderr  # it cannot even reach the socket
    assert refused(psql_without_password(cluster, "127.0.0.1", as_user="nobody"))


def test_the_socket_directory_is_private_to_the_account_postgres_runs_as(cluster):
    st = cluster.socket_dir.stat()
    assert st.st_mode & 0o777 == 0o700
    assert st.st_uid == Path(cluster.data_dir).stat().st_uid  # PostgreSQL's own account


def test_with_the_password_the_socket_still_works(cluster):
    """The refusals above are about the password, not a socket that does not answer."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
           "PGPASSWORD": cluster.superuser_password()}
    result = subprocess.run([cluster.bin("psql"), "--no-password", f"--host={cluster.socket_dir}",
                             f"--port={cluster.port}", "--username=postgres", "--dbname=postgres", "--tuples-only",
                             "--command=SELECT 'in'"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "in" in result.stdout


def test_a_cluster_made_when_local_users_were_trusted_is_switched_without_a_restart(cluster):
    """A region started by earlier code: initdb's trust lines for the socket, a socket directory
    anyone could enter. What `regio up` runs on it (ensure_initialized, process) closes both."""
    pid = cluster.process().pid()
    hba = cluster.data_dir / "pg_hba.conf"
    original = hba.read_text()
    trusting = original.replace("local   all             all                                     scram-sha-256",
                                "local   all             all                                     trust")
    assert trusting != original
    hba.write_text(trusting)
    cluster.socket_dir.chmod(0o755)
    platform_database._psql(cluster, "SELECT pg_reload_conf()")
    try:
        deadline = time.monotonic() + 10
        while psql_without_password(cluster, str(cluster.socket_dir)).returncode != 0:
            assert time.monotonic() < deadline, "the old, trusting state was not in force"
            time.sleep(0.1)
        assert not refused(psql_without_password(cluster, str(cluster.socket_dir), as_user="nobody"))

        cluster.ensure_initialized()
        cluster.process()

        assert cluster.process().pid() == pid  # not restarted
        deadline = time.monotonic() + 10
        while not refused(psql_without_password(cluster, str(cluster.socket_dir))):
            assert time.monotonic() < deadline, "root still gets in on the socket without a password"
            time.sleep(0.1)
        assert refused(psql_without_password(cluster, str(cluster.socket_dir), as_user="nobody"))
    finally:
        hba.write_text(original)
        cluster.socket_dir.chmod(0o700)
        platform_database._psql(cluster, "SELECT pg_reload_conf()")


# --- no password on a command line ----------------------------------------------------------


@pytest.fixture
def spawned(monkeypatch) -> list[list[str]]:
    """The argv of every process this test starts (asyncio's subprocesses are Popen too)."""
    argvs: list[list[str]] = []
    real_init = subprocess.Popen.__init__

    def recording_init(self, args, *rest, **kwargs):
        argvs.append([str(a) for a in ([args] if isinstance(args, (str, bytes, os.PathLike)) else args)])
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
    return argvs


def carrying(argvs: list[list[str]], secrets: list[str]) -> list[list[str]]:
    return [argv for argv in argvs if any(secret in arg for secret in secrets for arg in argv)]


def test_provisioning_the_platform_database_puts_no_password_on_a_command_line(cluster, spawned):
    passwords = {"alpha": "alpha-password-" + os.urandom(8).hex(), "beta": "beta-password-" + os.urandom(8).hex()}

    platform_database.provision(cluster, passwords)

    assert any(Path(argv[0]).name == "psql" for argv in spawned)
    assert carrying(spawned, [cluster.superuser_password(), *passwords.values()]) == []


def test_the_test_plugin_and_readiness_put_no_password_on_a_command_line(cluster, spawned):
    plugin._psql(cluster, 'CREATE DATABASE "plugin_made"', check=True)
    plugin._psql(cluster, 'DROP DATABASE "plugin_made"', check=True)
    assert cluster.ready()

    assert {Path(argv[0]).name for argv in spawned} >= {"psql", "pg_isready"}
    assert carrying(spawned, [cluster.superuser_password()]) == []


async def test_backups_dump_and_restore_put_no_password_on_a_command_line(cluster, spawned, tmp_path):
    role, password = await apps_database.create_database(cluster.url(), "env_backed_up")

    dump = await apps_database.dump(cluster.url(), "env_backed_up", tmp_path / "env.dump")
    await apps_database.restore(cluster.url(), "env_backed_up", role, dump)
    await apps_database.drop_database(cluster.url(), "env_backed_up", role)

    assert {Path(argv[0]).name for argv in spawned} >= {"pg_dump", "pg_restore"}
    assert carrying(spawned, [cluster.superuser_password(), password]) == []


def test_no_process_shows_the_password_while_psql_runs(cluster):
    """What another local user sees in ``ps`` while a slow statement runs."""
    password = cluster.superuser_password()
    seen: list[str] = []
    worker = threading.Thread(target=platform_database._psql, args=(cluster, "SELECT pg_sleep(2)"))
    worker.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass  # ended meanwhile
            time.sleep(0.1)
    finally:
        worker.join()
    assert any("psql" in line and str(cluster.port) in line for line in seen), \
        "the slow psql was never seen: the scan proves nothing"
    assert [line for line in seen if password in line] == []


def test_asyncio_seam_sees_subprocesses(spawned):
    """The recorder above sees asyncio's subprocesses, which backups start."""
    async def run() -> None:
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()

    asyncio.run(run())
    assert ["true"] in spawned
