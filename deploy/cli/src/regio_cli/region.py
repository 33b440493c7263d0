"""A local region: its servers, its services, and the order they start in."""
import asyncio
import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from regio_common import bus, egress, nats_auth, sealing
from regio_common.layout import Layout
from regio_common.processes import ManagedProcess, PortTaken, port_open, socket_open, wait_for_port
from regio_common.servers import (
    CADDY_HTTP_SOCKET,
    CADDY_HTTPS_SOCKET,
    PostgresCluster,
    caddy_admin_socket,
    caddy_process,
    nats_config_file,
    nats_process,
    prepare_caddy,
    seaweedfs_admin_credentials,
    seaweedfs_process,
    wait_seaweedfs_ready,
    write_private,
)
from regio_runner.settings import host_memory_mb

from . import apps_network, build_limits, database, secrets_store

CHECKOUT = Path(__file__).resolve().parents[4]


@dataclass
class Service:
    name: str  # folder under services/ and process name
    package: str
    schema: str
    port: int
    extra_env: dict[str, str]

    @property
    def prefix(self) -> str:
        return f"REGIO_{self.schema.upper()}_"


class Region:
    """The first region: the control panel, the platform's Postgres, the NATS hub, and the
    region's own data plane. Further regions on this machine are ExtraRegion."""

    # The platform database and its roles' prefix (database.provision) for this region's services.
    database_name = database.DATABASE
    role_prefix = database.ROLE_PREFIX

    def __init__(self, layout: Layout, say=print):
        self.layout = layout
        self.say = say
        self.state_dir = layout.state_dir
        self.secrets = self._load_secrets()
        self.postgres = PostgresCluster("postgres", self._platform_state_dir, self._platform_layout.ports.postgres)
        self.nats = self._nats()
        self.caddy = caddy_process(self.state_dir, layout.ports.ingress_http, layout.ports.ingress_https)
        self._services_address: str | None = None

    # --- what differs in a further region (ExtraRegion overrides these) --------------

    @property
    def _platform_layout(self) -> Layout:
        """The first region's layout: where the platform's Postgres and the control panel are."""
        return self.layout

    @property
    def _platform_state_dir(self) -> Path:
        return self._platform_layout.state_dir

    @property
    def owns_platform(self) -> bool:
        """Whether the platform's Postgres and the control panel are this region's to start and stop."""
        return True

    @property
    def apps_network(self) -> str:
        """The Docker network of this region's applications, on whose gateway its services listen."""
        return apps_network.NAME

    def _load_secrets(self) -> dict:
        return secrets_store.load_or_create(self.state_dir)

    def _nats(self) -> ManagedProcess:
        return nats_process(self.state_dir, self.layout.ports.nats, nats_config_file(self.state_dir))

    def builder_key(self) -> str:
        """What this region's builder opens repository credentials with: its own, derived key."""
        return sealing.build_key(self.secrets["build_key"], self.layout.region)

    def runner_scope(self) -> str:
        """What labels this region's containers: agents of two regions on one engine adopt only their own."""
        return self.secrets["installation"]

    # --- the region's services for applications --------------------------------

    @property
    def services_address(self) -> str:
        """Where containers reach the region's database cluster and object storage: the apps
        network's gateway (created by `up`; loopback when it does not exist, for status and down)."""
        if self._services_address is None:
            self._services_address = (apps_network.gateway_or_none(self.apps_network)
                                      or self._remembered_services_address() or "127.0.0.1")
        return self._services_address

    @property
    def _services_address_file(self) -> Path:
        return self.state_dir / "services-address"

    def _remembered_services_address(self) -> str | None:
        """The gateway `prepare` found, for a container of the region without the Docker socket."""
        try:
            return self._services_address_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def apps_postgres(self) -> PostgresCluster:
        listen = "127.0.0.1" if self.services_address == "127.0.0.1" else f"127.0.0.1,{self.services_address}"
        return PostgresCluster("apps-postgres", self.state_dir, self.layout.ports.apps_postgres,
                               listen_addresses=listen)

    def dedicated_databases(self) -> dict[str, PostgresCluster]:
        """Organisation id → the database server of its own in this region."""
        listen = self.apps_postgres.listen_addresses
        return {organisation: PostgresCluster(f"dedicated-postgres-{organisation[:8]}", self.state_dir, port,
                                              listen_addresses=listen)
                for organisation, port in self.layout.dedicated_databases.items()}

    @property
    def storage(self) -> ManagedProcess:
        p = self.layout.ports
        process = seaweedfs_process(self.state_dir, p.storage_s3, p.storage_master, p.storage_volume, p.storage_filer,
                                    listen=self.services_address, filer_leveldb=self.filer_leveldb())
        # Its S3 API listens on the gateway alone; its master, always on loopback, says it runs.
        return dataclasses.replace(process, port=p.storage_master)

    def filer_leveldb(self) -> Path | None:
        """Where its storage's filer keeps its metadata in one LevelDB; None: SeaweedFS's default."""
        return None

    def apps_service_ports(self) -> tuple[int, ...]:
        """The ports on the apps network's gateway that applications may reach: their database
        clusters and S3 API (not the storage's gRPC, filer or volume ports beside them)."""
        return (self.layout.ports.apps_postgres, self.layout.ports.storage_s3,
                *sorted(self.layout.dedicated_databases.values()))

    def guard_networks(self) -> None:
        """The host's firewall (regio_common.egress) for the apps network, its allowed ranges from
        REGIO_RUNNER_EGRESS_ALLOW, and for the builds network, from REGIO_BUILDER_EGRESS_ALLOW.
        Only root may change it: anyone else is told it is not in force."""
        networks = {self.apps_network: (self.apps_service_ports(), egress.ALLOW_SETTING)}
        if self.owns_platform:  # the builds network is shared by every region's builder
            networks[apps_network.BUILDS_NAME] = ((), egress.BUILDS_ALLOW_SETTING)
        allowed = {name: egress.parse_allowed(os.environ.get(setting, ""), setting)
                   for name, (_, setting) in networks.items()}
        if os.geteuid() != 0:
            self.say("not root: applications and their builds may reach the host's private networks and "
                     "instance metadata (see regio_common/egress.py for the rules to apply)")
            return
        resolvers = egress.host_resolvers()
        for name, (service_ports, _) in networks.items():
            gateway = apps_network.ensure_gateway(name)  # made if missing
            egress.apply(egress.EgressPolicy(bridge=apps_network.bridge(name), gateway=gateway,
                                             service_ports=service_ports, allowed=allowed[name], resolvers=resolvers))

    def limit_builds(self) -> None:
        """The process limit on builds (build_limits), and the builder told where it is."""
        parent = build_limits.prepare(self.say)
        self._build_cgroup_file.write_text(f"{parent}\n" if parent else "")

    @property
    def _build_cgroup_file(self) -> Path:
        return self._platform_state_dir / "build-cgroup-parent"  # one limit for every region's builds

    def _build_cgroup_parent(self) -> dict[str, str]:
        """For the builder's environment: the cgroup parent `up` limited, if it could."""
        try:
            parent = self._build_cgroup_file.read_text().strip()
        except FileNotFoundError:
            return {}
        return {"BUILD_CGROUP_PARENT": parent} if parent else {}

    def region_servers(self) -> dict[str, dict]:
        """For the control panel: where each of the region's services runs, and its administrator."""
        p = self.layout.ports
        access_key, secret_key = seaweedfs_admin_credentials(self.state_dir)
        dedicated = [{"organisation": organisation,
                      "connection": {"admin_url": cluster.url(), "host": self.services_address, "port": cluster.port}}
                     for organisation, cluster in self.dedicated_databases().items()]
        return {
            "dedicated": dedicated,
            "postgres-18": {"admin_url": self.apps_postgres.url(), "host": self.services_address,
                            "port": p.apps_postgres},
            "s3": {"endpoint": f"http://{self.services_address}:{p.storage_s3}", "access_key": access_key,
                   "secret_key": secret_key, "host": self.services_address, "port": p.storage_s3},
        }

    def runner_sealing_key(self) -> str:
        """What this region's runner agents open release environments with: the region's own
        key, or in a region made before regions had one, the key every region shares."""
        if secrets_store.per_region_sealing(self.secrets):
            return sealing.region_key(self.secrets["region_key"], self.layout.region)
        return self.secrets["region_key"]

    # --- NATS users ------------------------------------------------------------

    def runner_names(self) -> list[str]:
        return [f"runner-{i + 1}" for i in range(self.layout.runners)]

    def nats_password(self, user: str) -> str:
        """The NATS password of one component (made, and kept with the region's secrets, the first time)."""
        return secrets_store.nats_password(self.state_dir, self.secrets, user)

    def nats_users(self) -> list[nats_auth.User]:
        return nats_auth.users(self.layout.region, self.runner_names(), self.nats_password)

    def nats_config(self) -> str:
        """The hub's: this region's users, a link user per further region, and where they join."""
        links = [nats_auth.link_user(slug, self.nats_password(nats_auth.link_user_name(slug)))
                 for slug in self.layout.extra_regions]
        return nats_auth.hub_config([*self.nats_users(), *links],
                                    leaf_listen=f"127.0.0.1:{self.layout.ports.nats_leaf}")

    def write_nats_users(self) -> None:
        """Every component's NATS user with its permissions (nats_auth), into NATS's configuration;
        a running NATS reads it again, so runners (and regions) added since start are let in."""
        if nats_auth.write_config(nats_config_file(self.state_dir), self.nats_config()) and self.nats.running():
            nats_auth.reload(self.nats.pid())

    def admit_regions(self) -> None:
        """The hub lets in the further regions recorded (their link users) and listens for them.

        A hub started before regions joined it has no leaf node listener, and nats-server
        cannot add one on reload: it is restarted once (its clients reconnect by themselves)."""
        self.write_nats_users()
        if self.nats.running() and not port_open(self.layout.ports.nats_leaf):
            self.say("nats has no leaf node listener for further regions: restarting it")
            self.nats.stop()
            self._start(self.nats, timeout=30)

    # --- addresses -------------------------------------------------------------

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.layout.ports.nats}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._platform_layout.ports.controlpanel}"

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.layout.ports.ingress_http}"

    @property
    def ingress_ca(self) -> Path:
        return self.state_dir / "caddy" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def url_of(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.layout.ports, service)}"

    # --- services --------------------------------------------------------------

    def services(self) -> list[Service]:
        p = self.layout.ports
        master_key = {"REGION_KEY": self.secrets["region_key"],
                      "PER_REGION_SEALING": str(secrets_store.per_region_sealing(self.secrets)).lower()}
        return [
            Service("controlpanel", "regio_controlpanel", "controlpanel", p.controlpanel, {
                **master_key,
                "SECRETS_KEY": self.secrets["controlpanel_key"],
                "BUILD_KEY": self.secrets["build_key"],
                "REGION_DOMAIN": self.layout.region_domain,
                "PUBLIC_URL": self.api_url,
                "INGRESS_PORT": str(p.ingress_http),
                # Other regions (on this machine) forward a migrated application's hosts here.
                "INGRESS_ADDRESS": f"127.0.0.1:{p.ingress_http}",
            }),
            *self.region_services(),
        ]

    def region_services(self) -> list[Service]:
        """The region's own: builder, controller, ingress, runner agents."""
        p = self.layout.ports
        services = [
            Service("builder", "regio_builder", "builder", p.builder, {
                # One operator's machine: any repository they can read, servers on loopback.
                "ALLOW_LOCAL_REPOSITORIES": "true",
                "ALLOW_PRIVATE_REPOSITORY_HOSTS": "true",
                "BUILD_KEY": self.builder_key(),
                "BUILD_NETWORK": apps_network.BUILDS_NAME,
                **self._build_cgroup_parent(),
            }),
            Service("controller", "regio_controller", "controller", p.controller, {
                # Every ingress of the region: a drain asks each what is in flight to old instances.
                "INGRESS_URLS": json.dumps([self.url_of("ingress")]),
            }),
            Service("ingress", "regio_ingress", "ingress", p.ingress, {
                "CADDY_ADMIN_SOCKET": str(caddy_admin_socket(self.state_dir)),
                "HTTP_LISTEN": f"127.0.0.1:{p.ingress_http}",
                "HTTPS_LISTEN": f"127.0.0.1:{p.ingress_https}",
                "HTTP_SOCKET": CADDY_HTTP_SOCKET,
                "HTTPS_SOCKET": CADDY_HTTPS_SOCKET,
                "ACCESS_LOG_LISTEN": f"127.0.0.1:{p.ingress_access_log}",
                "DNS_LISTEN": f"127.0.0.1:{p.ingress_dns}",
                "EDGE_LISTEN": f"127.0.0.1:{p.ingress_edge}",
                "CONTROLLER_URL": self.url_of("controller"),
                # The other regions on this machine forward a migrated application's requests
                # from loopback: their X-Forwarded-Proto is believed (no redirect loop).
                "TRUSTED_FORWARDERS": json.dumps(["127.0.0.1/32"]),
            }),
        ]
        # Runner agents sharing this host's engine share its memory too.
        memory_each = host_memory_mb() // self.layout.runners
        for i in range(self.layout.runners):
            services.append(Service(f"runner-agent-{i + 1}", "regio_runner", "runner", p.runner_agent_first + i, {
                "REGION_KEY": self.runner_sealing_key(),
                "NAME": f"runner-{i + 1}",
                "ADDRESS": "127.0.0.1",
                "MEMORY_MB": str(memory_each),
                "SCOPE": self.runner_scope(),
                "NETWORK": self.apps_network,
            }))
        return services

    def service_env(self, service: Service) -> dict[str, str]:
        password = self.secrets["database_passwords"][service.schema]
        nats_user = service.extra_env.get("NAME", service.schema)  # a runner agent's user is its runner
        env = {
            "DATABASE_URL": database.service_url(self.postgres, service.schema, password, self.database_name,
                                                 self.role_prefix),
            "NATS_URL": self.nats_url,
            "NATS_USER": nats_user,
            "NATS_PASSWORD": self.nats_password(nats_user),
            "REGION": self.layout.region,
            "SERVICE_TOKEN": self.secrets["service_token"],
            "HOST": "127.0.0.1",
            "PORT": str(service.port),
            **service.extra_env,
        }
        return {service.prefix + key: value for key, value in env.items()}

    def process(self, service: Service) -> ManagedProcess:
        return ManagedProcess(
            name=service.name,
            argv=[sys.executable, "-m", service.package],
            state_dir=self.state_dir,
            port=service.port,
            env=self.service_env(service),
            cwd=CHECKOUT,
        )

    def servers(self) -> list[ManagedProcess]:
        """The servers this region starts and stops (a further region uses the first one's Postgres)."""
        return [*([self.postgres.process()] if self.owns_platform else []), self.nats, self.caddy,
                self.apps_postgres.process(), self.storage,
                *(cluster.process() for cluster in self.dedicated_databases().values())]

    # --- lifecycle -------------------------------------------------------------

    # `up` runs the steps below in order, starting each process in the background. The
    # containerised region (docker-compose.yml) runs the same steps as one-shot containers
    # (`regio prepare`, `regio setup`, `regio seed`) and each process in a container of its
    # own (`regio run NAME`), with Compose ordering them.

    def up(self) -> None:
        self._move_caddy_admin_off_tcp()
        self._check_ports()
        self.prepare()
        self.guard_networks()  # before any runner agent starts an application, or the builder a build
        if self.owns_platform:
            self.limit_builds()
            self._start(self.postgres.process(), timeout=60)
            self.admit_regions()
        elif not self.postgres.ready():
            raise RuntimeError(f"the first region's PostgreSQL (port {self.postgres.port}) is not running: "
                               "`regio up` starts it")
        self.postgres.wait_ready()
        self._start(self.nats, timeout=30)
        self._start(self.caddy, timeout=30)
        self._start_region_services()
        self.setup()
        for service in self.services():
            self._start(self.process(service), timeout=30)
        self._wait_ready()
        self.seed()

    def prepare(self) -> None:
        """What must exist before any server starts: the layout, the secrets, the clusters' data
        directories, and the apps network, on whose gateway the region's services listen."""
        self.layout.save()
        self.write_nats_users()
        if self.owns_platform:
            self.postgres.ensure_initialized()
        prepare_caddy(self.state_dir, self.layout.ports.ingress_http, self.layout.ports.ingress_https)
        self._services_address = apps_network.ensure_gateway(self.apps_network)
        self._services_address_file.write_text(self._services_address + "\n")
        apps_network.ensure_gateway(apps_network.BUILDS_NAME)
        for cluster in [self.apps_postgres, *self.dedicated_databases().values()]:
            cluster.ensure_initialized()
        _ = self.storage  # writes SeaweedFS's identities and gRPC certificates once, before its readers

    def setup(self) -> None:
        """Once the platform's Postgres and NATS run: each service's role and schema, the
        streams and buckets, and every service's migrations."""
        self.postgres.wait_ready()
        wait_for_port(self.layout.ports.nats, 30)
        database.provision(self.postgres, self.secrets["database_passwords"], self.database_name,
                           self.role_prefix)
        asyncio.run(self._declare_streams())
        self._migrate()

    def seed(self) -> None:
        """Once the control panel's schema exists: the seed data, and the `regio env` file."""
        self._seed()
        self._write_env()

    def components(self) -> dict[str, ManagedProcess]:
        """Every server and service of the region by name, as `regio run NAME` knows them."""
        return {**{p.name: p for p in self.servers()}, **{s.name: self.process(s) for s in self.services()}}

    def down(self) -> None:
        for service in reversed(self.services()):
            if self.process(service).stop():
                self.say(f"stopped {service.name}")
        for server in reversed(self.servers()):
            if server.stop():
                self.say(f"stopped {server.name}")

    def _check_ports(self) -> None:
        """Before starting anything: every port we need is ours already or free."""
        for process in [*self.servers(), *(self.process(s) for s in self.services())]:
            if process.port is not None and not process.running() and port_open(process.port):
                raise PortTaken(process.name, process.port)
        for port in (self.layout.ports.ingress_http, self.layout.ports.ingress_https):
            if not self.caddy.running() and port_open(port):
                raise PortTaken("ingress (caddy)", port)
        ingress = next(s for s in self.services() if s.name == "ingress")
        for what, port in (("dns", self.layout.ports.ingress_dns), ("access log", self.layout.ports.ingress_access_log)):
            if not self.process(ingress).running() and _udp_port_taken(port):
                raise PortTaken(f"ingress ({what})", port)
        if not self.process(ingress).running() and port_open(self.layout.ports.ingress_edge):
            raise PortTaken("ingress (edge)", self.layout.ports.ingress_edge)

    def _start_region_services(self) -> None:
        """The applications' database cluster and object storage, on the apps network's gateway."""
        for cluster in [self.apps_postgres, *self.dedicated_databases().values()]:
            if cluster.started_with_other_settings():
                # Once, after an upgrade: migrations replicate its databases (wal_level=logical),
                # which only a restart gives a running server. Applications reconnect.
                self.say(f"restarting {cluster.name}: it runs with older settings")
                cluster.process().stop()
            self._start(cluster.process(), timeout=60)
            cluster.wait_ready()
        self._start(self.storage, timeout=60)
        wait_seaweedfs_ready(self.layout.ports.storage_s3, self.layout.ports.storage_master, host=self.services_address,
                             process=self.storage)

    def _start(self, process: ManagedProcess, timeout: float) -> None:
        if process.start():
            self.say(f"started {process.name} on {f'127.0.0.1:{process.port}' if process.port else process.unix_socket}")
        process.wait_listening(timeout)

    def _move_caddy_admin_off_tcp(self) -> None:
        """A Caddy started by an earlier `regio up` has its admin API on a loopback port, where
        any local process can load a config into the ingress, and the ingress beside it keeps
        loading configs that put it there. Both are stopped, to start again on the private
        socket: the HTTP and HTTPS ports close for the few seconds this takes, once."""
        if not self.caddy.running() or socket_open(caddy_admin_socket(self.state_dir)):
            return
        self.say("caddy's admin API is on a loopback port: restarting caddy and the ingress on a private socket")
        ingress = next(s for s in self.services() if s.name == "ingress")
        self.process(ingress).stop()
        self.caddy.stop()

    async def _declare_streams(self) -> None:
        nc = await bus.connect(self.nats_url, "regio-cli", nats_auth.ADMIN, self.nats_password(nats_auth.ADMIN))
        try:
            js = nc.jetstream()
            # This server's streams take this region's subjects only: another region's are its own server's.
            await bus.ensure_streams(js, [self.layout.region])
            await bus.ensure_buckets(js, self.layout.region)
        finally:
            await nc.close()

    def _migrate(self) -> None:
        """Every service's own `alembic upgrade head`, as its own role, in parallel."""
        by_schema = {s.schema: s for s in self.services()}
        folders = {schema: folder for schema, folder in {
            "controlpanel": "controlpanel", "builder": "builder", "controller": "controller",
            "ingress": "ingress", "runner": "runner-agent"}.items() if schema in by_schema}

        def migrate(schema: str) -> None:
            service = by_schema[schema]
            ini = CHECKOUT / "services" / folders[schema] / "alembic.ini"
            result = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
                                    env={**os.environ, **self.service_env(service)},
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"migrations of {schema} failed:\n{result.stderr}")

        with ThreadPoolExecutor(len(folders)) as pool:
            list(pool.map(migrate, folders))

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = {s.name: f"http://127.0.0.1:{s.port}/readyz" for s in self.services()}
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending:
                time.sleep(0.2)
        if pending:
            logs = ", ".join(str(self.state_dir / "logs" / f"{n}.log") for n in pending)
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(pending)}; see {logs}")

    def _seed(self) -> None:
        """Every start: the default region, a plan, an admin (with a web password), an organisation
        and an API token on the first; where the region's service servers are on each."""
        token_file = self.state_dir / "secrets" / "admin-token"
        service = next(s for s in self.services() if s.name == "controlpanel")
        password = self.admin_password_file
        if not password.exists():  # the admin's web sign-in; editing the file changes it at the next `up`
            write_private(password, secrets.token_urlsafe(18) + "\n")
        servers = self.state_dir / "secrets" / "region-servers.json"
        write_private(servers, json.dumps(self.region_servers()))
        result = subprocess.run(
            [sys.executable, "-m", "regio_controlpanel.seed", "--region", self.layout.region,
             "--domain", self.layout.region_domain, "--servers", str(servers),
             "--admin-password-file", str(password),
             # One operator's machine: *.localhost names reach only it, so no one else can hold
             # a name under the region's domain, and there is no public DNS to prove it in.
             "--trust-region-domain",
             # and builds from the operator's own repositories and loopback servers (as its builder does).
             "--local-repository-sources"],
            env={**os.environ, **self.service_env(service)}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"seeding failed:\n{result.stderr}")
        seeded = json.loads(result.stdout)
        if seeded.get("token"):  # shown once, at creation
            write_private(token_file, seeded["token"] + "\n")

    def control_panel_module(self, module: str, *args: str) -> dict | list:
        """``python -m regio_controlpanel.<module> ARGS`` with the control panel's environment; its
        JSON output. Exit status 2 (input it refuses) raises ValueError with its message."""
        service = next(s for s in self.services() if s.name == "controlpanel")
        result = subprocess.run([sys.executable, "-m", f"regio_controlpanel.{module}", *args],
                                env={**os.environ, **self.service_env(service)}, capture_output=True, text=True)
        if result.returncode == 2:
            raise ValueError(result.stderr.strip() or f"regio_controlpanel.{module} refused it")
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or f"regio_controlpanel.{module} failed")
        return json.loads(result.stdout)

    def configure(self, name: str, *, dns_resolver: str | None = None, **switches: bool | None) -> dict:
        """`regio region set`: a region's DNS resolver ("" for the system's), and its switches
        (trust_region_domain, local_repositories, private_repository_hosts, free) on or off;
        None leaves one as it is."""
        service = next(s for s in self.services() if s.name == "controlpanel")
        options = ["--dns-resolver", dns_resolver] if dns_resolver is not None else []
        for switch, on in switches.items():
            if on is not None:
                options += [f"--{switch.replace('_', '-')}", "on" if on else "off"]
        result = subprocess.run([sys.executable, "-m", "regio_controlpanel.region_settings", name, *options],
                                env={**os.environ, **self.service_env(service)}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or "regio_controlpanel.region_settings failed")
        return json.loads(result.stdout)

    def billing(self, *argv: str) -> dict | list:
        """`regio billing …`: regio_controlpanel.billing_admin run with the control panel's
        environment (its database); its JSON answer, or RuntimeError with what it refused."""
        service = next(s for s in self.services() if s.name == "controlpanel")
        result = subprocess.run([sys.executable, "-m", "regio_controlpanel.billing_admin", *argv],
                                env={**os.environ, **self.service_env(service)}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or "regio_controlpanel.billing_admin failed")
        return json.loads(result.stdout)

    @property
    def admin_password_file(self) -> Path:
        return self._platform_state_dir / "secrets" / "admin-password"

    def env_lines(self) -> list[str]:
        token_file = self._platform_state_dir / "secrets" / "admin-token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        return [
            f"export REGIO_API_URL={self.api_url}",
            f"export REGIO_TOKEN={token}",
            f"export REGIO_INGRESS_URL={self.ingress_url}",
            f"export REGIO_INGRESS_HTTPS_URL=https://127.0.0.1:{self.layout.ports.ingress_https}",
            # The root of Caddy's own CA, which signs every domain's certificate: curl --cacert "$REGIO_INGRESS_CA"
            f"export REGIO_INGRESS_CA={self.ingress_ca}",
            f"export REGIO_REGION_DOMAIN={self.layout.region_domain}",
            # The web Control Panel: sign in as admin@regio.localhost with the password in this file.
            f"export REGIO_WEB_URL={self.api_url}/web/",
            f"export REGIO_ADMIN_PASSWORD_FILE={self.admin_password_file}",
        ]

    def _write_env(self) -> None:
        write_private(self.state_dir / "env", "\n".join(self.env_lines()) + "\n")

    def status(self) -> list[tuple[str, str, int | None, str]]:
        rows = []
        for process in self.servers():
            rows.append((process.name, "running" if process.running() else "stopped", process.port, ""))
        for service in self.services():
            process = self.process(service)
            ready = ""
            if process.running():
                try:
                    ready = "ready" if httpx.get(f"http://127.0.0.1:{service.port}/readyz", timeout=1).status_code == 200 else "not ready"
                except httpx.HTTPError:
                    ready = "not answering"
            rows.append((service.name, "running" if process.running() else "stopped", service.port, ready))
        return rows


def _udp_port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
