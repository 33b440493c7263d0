"""Where a region keeps its state and which loopback ports it listens on.

`regio up` writes this to ``<state>/region.json``; the test plugin reads it to reuse
a running region's servers. The first region's state also holds the local data planes of
further regions, each in ``<state>/regions/<slug>/`` with a layout of its own."""
import dataclasses
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SERVICES = ("controlpanel", "builder", "controller", "ingress")


@dataclass
class Ports:
    controlpanel: int = 8700
    builder: int = 8701
    controller: int = 8702
    ingress: int = 8703
    ingress_dns: int = 8753  # UDP: the ingress answers Caddy's lookups of instances here
    runner_agent_first: int = 8710  # runner agent i listens on first + i
    nats: int = 8722
    nats_leaf: int = 8723  # the hub: where further regions' NATS servers join it as leaf nodes
    postgres: int = 8732
    ingress_http: int = 8780
    ingress_https: int = 8743
    ingress_access_log: int = 8754  # UDP: Caddy sends the ingress one access log entry per datagram
    ingress_edge: int = 8755  # the ingress's own answers (redirects, unknown hosts), as Caddy proxies to them
    # The region's services for applications, on the apps network's gateway (and loopback).
    apps_postgres: int = 8734
    storage_s3: int = 8735
    storage_master: int = 8736
    storage_volume: int = 8737
    storage_filer: int = 8738

    def shifted(self, by: int) -> "Ports":
        """Every port ``by`` higher: a further region's data plane beside the first on one machine."""
        return Ports(**{f.name: getattr(self, f.name) + by for f in fields(self)})


# A region's slug is a NATS subject token, part of a database's name and a domain label.
REGION_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# Further regions' ports: the first region's, shifted by this times the region's index.
REGION_PORT_STRIDE = 100
MAX_EXTRA_REGIONS = 40  # their ports stay below the seaweedfs gRPC ports (port + 10000) of the first


def check_region_slug(slug: str) -> str:
    if not REGION_SLUG.match(slug):
        raise ValueError(f"region slug {slug!r} must be a lower-case letter, then at most 30 lower-case "
                         "letters, digits or '-'")
    return slug


@dataclass
class Layout:
    state_dir: Path
    region: str = "local"
    region_domain: str = "local.regio.localhost"
    runners: int = 2  # a local region shows placement, spread and healing across runners from the start
    ports: Ports = field(default_factory=Ports)
    # Organisations with a database server of their own in this region: organisation id → its port.
    dedicated_databases: dict[str, int] = field(default_factory=dict)
    # The first region only: the further regions whose data planes run on this machine, slug → index
    # (their ports are this region's shifted by REGION_PORT_STRIDE × index).
    extra_regions: dict[str, int] = field(default_factory=dict)
    DEDICATED_FIRST_PORT = 8760

    def add_dedicated_database(self, organisation: str) -> int:
        if organisation not in self.dedicated_databases:
            self.dedicated_databases[organisation] = max(self.dedicated_databases.values(),
                                                         default=self.dedicated_first_port - 1) + 1
        return self.dedicated_databases[organisation]

    @property
    def dedicated_first_port(self) -> int:
        """Where this region's dedicated database servers start: a further region's, shifted like its ports."""
        return self.DEDICATED_FIRST_PORT + (self.ports.postgres - Ports.postgres)

    def extra_state_dir(self, slug: str) -> Path:
        return self.state_dir / "regions" / check_region_slug(slug)

    def add_extra_region(self, slug: str) -> int:
        """Record a further region (its index: the lowest free one); the same slug keeps its index."""
        if slug == self.region:
            raise ValueError(f"{slug!r} is this region's own slug")
        check_region_slug(slug)
        if slug not in self.extra_regions:
            taken = set(self.extra_regions.values())
            index = next(i for i in range(1, MAX_EXTRA_REGIONS + 2) if i not in taken)
            if index > MAX_EXTRA_REGIONS:
                raise ValueError(f"at most {MAX_EXTRA_REGIONS} further regions on one machine")
            self.extra_regions[slug] = index
        return self.extra_regions[slug]

    def extra_layout(self, slug: str) -> "Layout":
        """A recorded further region's layout: as saved, else new (its ports shifted, one runner)."""
        if slug not in self.extra_regions:
            raise KeyError(slug)
        state_dir = self.extra_state_dir(slug)
        return Layout.load(state_dir) or Layout(
            state_dir=state_dir, region=slug, region_domain=f"{slug}.regio.localhost", runners=1,
            ports=self.ports.shifted(REGION_PORT_STRIDE * self.extra_regions[slug]))

    @property
    def file(self) -> Path:
        return self.state_dir / "region.json"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        self.file.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> "Layout | None":
        try:
            data = json.loads((state_dir / "region.json").read_text())
        except FileNotFoundError:
            return None
        # Where it was found, not where it was written: a state directory mounted elsewhere
        # (a container's /var/lib/regio) or moved keeps working.
        data["state_dir"] = state_dir
        # Ports an earlier version listened on and this one does not (Caddy's admin API, now a
        # Unix socket) are dropped, so a region.json written before still loads.
        known = {f.name for f in fields(Ports)}
        data["ports"] = Ports(**{name: port for name, port in data["ports"].items() if name in known})
        # Likewise keys this version does not know.
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}})


def default_state_dir(start: Path | None = None) -> Path:
    """REGIO_STATE_DIR, else ``.regio`` in the checkout that holds ``start``."""
    if os.environ.get("REGIO_STATE_DIR"):
        return Path(os.environ["REGIO_STATE_DIR"]).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "regio").is_file() and (d / "libs" / "common").is_dir():
            return d / ".regio"
    return here / ".regio"
