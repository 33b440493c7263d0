"""A further region's data plane on the first one's machine (`regio region add`, `regio up --regions N`).

It has its own NATS server, a leaf node of the first region's (the hub), with JetStream domain
= its slug; its own Caddy, database server and S3 storage for applications, on an apps network
of its own; its own builder, controller, ingress and runner agents, whose schemas live in a
database of its own on the first region's PostgreSQL. Its state directory
(``<first>/regions/<slug>/``) holds only its own secrets: keys derived for it, never the masters."""
import dataclasses
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound

from regio_common import egress, nats_auth
from regio_common.layout import Layout
from regio_common.processes import ManagedProcess
from regio_common.servers import nats_config_file, nats_process, nats_store_dir, write_private

from . import apps_network, database, secrets_store
from .launcher import LaunchedProcess, launcher_process, socket_path
from .region import CHECKOUT, Region, Service

VENDORS = ("aws", "azure", "gcp", "exoscale", "other", "self-hosted")

# A further region on one machine (CI's second region) is kept light when idle: its services'
# safety-net polls (each is woken by messages when there is work) run every 5 s instead of
# every 1-2 s, and its controller's healing pass every 4 s instead of 2.
IDLE_POLLS = {"builder": {"POLL_SECONDS": "5"},
              "controller": {"ROLLOUT_POLL_SECONDS": "5", "RECONCILE_SECONDS": "4"},
              "ingress": {"CADDY_CHECK_SECONDS": "5"}}
LABEL_SCOPE = "regio.scope"  # as the runner agents label their containers
ORGANISATION_LABEL = "organisation"  # a runner's label the controller's placement reads (scheduler/placement.py)


class RegionError(ValueError):
    """Bad input for a region (unknown slug, bad vendor): the operator is told, exit 2."""


@dataclass
class Registration:
    """How the region is registered with the control panel (regio_controlpanel.regions add)."""
    name: str
    domain: str
    vendor: str = "self-hosted"
    location: str = "this machine"
    dedicated_to: str | None = None
    free: bool = False

    def __post_init__(self) -> None:
        if self.vendor not in VENDORS:
            raise RegionError(f"vendor {self.vendor!r} is not one of {', '.join(VENDORS)}")
        for field, value, limit in (("name", self.name, 100), ("domain", self.domain, 200),
                                    ("location", self.location, 200)):
            if not value or len(value) > limit:
                raise RegionError(f"--{field} must have 1 to {limit} characters")


class ExtraRegion(Region):
    def __init__(self, first: Region, slug: str, say=print):
        # ExtraRegion(first, slug) for a region `new_region` recorded.
        if slug not in first.layout.extra_regions:
            raise RegionError(f"no region {slug!r} on this machine; it has: "
                              f"{', '.join([first.layout.region, *first.layout.extra_regions])}")
        self.first = first
        super().__init__(first.layout.extra_layout(slug), say)

    @property
    def slug(self) -> str:
        return self.layout.region

    # --- what differs from the first region -----------------------------------

    @property
    def _platform_layout(self) -> Layout:
        return self.first.layout

    @property
    def owns_platform(self) -> bool:
        return False

    @property
    def apps_network(self) -> str:
        return apps_network.region_network(self.slug)

    @property
    def database_name(self) -> str:
        return database.region_database(self.slug)

    @property
    def role_prefix(self) -> str:
        return self.database_name + "_"

    def _load_secrets(self) -> dict:
        return secrets_store.load_or_create_extra(self.state_dir, self.first.secrets, self.slug)

    def _nats(self) -> ManagedProcess:
        # Its JetStream domain and store are in its configuration (nats_auth.leaf_config).
        return nats_process(self.state_dir, self.layout.ports.nats, nats_config_file(self.state_dir),
                            jetstream_in_config=True)

    def builder_key(self) -> str:
        return self.secrets["build_key"]

    def runner_sealing_key(self) -> str:
        return self.secrets["region_key"]

    def runner_scope(self) -> str:
        return self.secrets["scope"]

    def services(self) -> list[Service]:
        return self.region_services()

    def filer_leveldb(self) -> Path | None:
        """Its filer's metadata in one LevelDB (servers.seaweedfs_process: about 90 MB less after a
        restart); a region made before keeps the store its data is in."""
        data = self.state_dir / "seaweedfs" / "data"
        return None if (data / "filerldb2").exists() else data / "filerldb"

    def region_services(self) -> list[Service]:
        services = super().region_services()
        dedicated_to = self.registration().dedicated_to
        for service in services:
            service.extra_env.update(IDLE_POLLS.get(service.schema, {}))
            if service.schema == "runner" and dedicated_to:
                # The controller places a dedicated region's instances only on runners labelled
                # with its organisation (and a public region's never on them).
                service.extra_env["LABELS"] = json.dumps({ORGANISATION_LABEL: dedicated_to})
        return services

    # --- its services, forked by its launcher (launcher.py: about half the memory) ----

    @property
    def launcher(self) -> ManagedProcess:
        return launcher_process(self.state_dir, CHECKOUT)

    def process(self, service: Service) -> ManagedProcess:
        started = super().process(service)
        return LaunchedProcess(**{f.name: getattr(started, f.name) for f in dataclasses.fields(ManagedProcess)},
                               launcher_socket=socket_path(self.state_dir))

    def servers(self) -> list[ManagedProcess]:
        return [*super().servers(), self.launcher]

    def _start_region_services(self) -> None:
        super()._start_region_services()
        # A launcher with none of its services running is started again, so that what it forks
        # next runs the code as it is now, not as it was when the launcher imported it.
        if not any(self.process(s).running() for s in self.services()):
            self.launcher.stop()
        self._start(self.launcher, timeout=60)

    def up(self) -> None:
        """The first region runs (its Postgres, the hub, the control panel): the hub is told of
        this region's link, then this region's data plane starts as the first's does."""
        if not (self.first.nats.running() and self.postgres.ready()):
            raise RuntimeError(f"the first region ({self.first.layout.region}) is not running: `regio up` starts it")
        self.first.admit_regions()
        super().up()

    def nats_config(self) -> str:
        """Its own users, its JetStream domain, and its link to the hub as its link user."""
        link = nats_auth.link_user_name(self.slug)
        return nats_auth.leaf_config(self.slug, self.nats_users(),
                                     f"nats-leaf://127.0.0.1:{self.first.layout.ports.nats_leaf}",
                                     link, self.first.nats_password(link), nats_store_dir(self.state_dir))

    # --- registration with the control panel ------------------------------------

    @property
    def _registration_file(self) -> Path:
        return self.state_dir / "registration.json"

    def registration(self) -> Registration:
        try:
            return Registration(**json.loads(self._registration_file.read_text()))
        except FileNotFoundError:
            return Registration(name=self.slug, domain=self.layout.region_domain)

    def register(self, registration: Registration) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._registration_file.write_text(json.dumps(asdict(registration), indent=2) + "\n")
        self.layout.region_domain = registration.domain
        self.layout.save()

    def env_lines(self) -> list[str]:
        """The first region's, less the admin's token and password: a region's state holds its
        own secrets alone, and may be handed to whoever runs its machines."""
        return [line for line in super().env_lines()
                if not line.startswith(("export REGIO_TOKEN=", "export REGIO_ADMIN_PASSWORD_FILE="))]

    def seed(self) -> None:
        """The region in the control panel (created, or updated as registered), and its env file.
        Whether the free plan may use it is left as it is: `regio region add --free` and `regio
        region set --free/--no-free` change it, and a later `up` must not undo that."""
        registration = self.registration()
        servers = self.state_dir / "secrets" / "region-servers.json"
        write_private(servers, json.dumps(self.region_servers()))
        options = ["--name", registration.name, "--domain", registration.domain, "--vendor", registration.vendor,
                   "--location", registration.location,
                   *(["--dedicated-to", registration.dedicated_to] if registration.dedicated_to else []),
                   "--jetstream-domain", self.slug, "--site-port", str(self.layout.ports.ingress_http),
                   "--ingress-address", f"127.0.0.1:{self.layout.ports.ingress_http}",
                   "--servers", str(servers),
                   # One operator's machine, as the first region: see Region._seed.
                   "--trust-region-domain", "--local-repository-sources"]
        self.first.control_panel_module("regions", "add", self.slug, *options)
        self._write_env()

    # --- removal -------------------------------------------------------------

    def remove(self) -> None:
        """Stop it, retire it in the control panel, and delete what it kept on this machine: its
        containers, its apps network and firewall chain, its database and roles, its state."""
        try:
            self.first.control_panel_module("regions", "retire", self.slug)
        except ValueError as e:
            if f"no region {self.slug!r}" not in str(e):
                raise
            # Never registered (its first `up` failed before its seed): only this machine has it.
            self.say(f"the control panel has no region {self.slug!r}; deleting what this machine kept of it")
        self.forget()

    def forget(self) -> None:
        """Delete what it kept on this machine (`remove` without retiring it: a region the control
        panel refused to add)."""
        self.down()
        self._remove_containers_and_network()
        self.postgres.psql(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        roles = ", ".join(database.role_name(schema, self.role_prefix) for schema in self.secrets["database_passwords"])
        self.postgres.psql(f"DROP ROLE IF EXISTS {roles}")
        shutil.rmtree(self.state_dir)
        del self.first.layout.extra_regions[self.slug]
        self.first.layout.save()
        self.first.write_nats_users()  # its link user goes

    def _remove_containers_and_network(self) -> None:
        try:
            client = docker.from_env()
        except DockerException:
            self.say("Docker does not answer: the region's containers and network are left")
            return
        try:
            for container in client.containers.list(all=True, filters={"label": f"{LABEL_SCOPE}={self.runner_scope()}"}):
                container.remove(force=True)
            try:
                network = client.networks.get(self.apps_network)
            except NotFound:
                return
            if os.geteuid() == 0:  # only root changed the firewall (Region.guard_networks)
                egress.remove(egress.EgressPolicy(bridge=egress.bridge_of(network.attrs), gateway="",
                                                  service_ports=()))
            network.remove()
        finally:
            client.close()


def new_region(first: Region, slug: str, registration: Registration, runners: int | None, say=print) -> ExtraRegion:
    """Record a further region on this machine (or update one recorded) and let it join the hub."""
    if not secrets_store.per_region_sealing(first.secrets):
        # The control panel seals every region's releases with the one key of such an
        # installation: a further region's runners, holding a key of their own, could open none,
        # and handing them that key would let them open the first region's.
        raise RegionError("this installation seals every region's releases with one key (made before regions "
                          "had keys of their own): set up a new one to run further regions")
    try:
        first.layout.add_extra_region(slug)
    except ValueError as e:
        raise RegionError(str(e)) from None
    first.layout.save()
    region = ExtraRegion(first, slug, say)
    if runners is not None:
        region.layout.runners = runners
    region.register(registration)
    return region


def extra_regions(first: Region, say=print) -> list[ExtraRegion]:
    return [ExtraRegion(first, slug, say) for slug in first.layout.extra_regions]

