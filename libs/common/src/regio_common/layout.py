"""Where a region keeps its state and which loopback ports it listens on.

`regio up` writes this to ``<state>/region.json``; the test plugin reads it to reuse
a running region's servers."""
import json
import os
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


@dataclass
class Layout:
    state_dir: Path
    region: str = "local"
    region_domain: str = "local.regio.localhost"
    runners: int = 2  # a local region shows placement, spread and healing across runners from the start
    ports: Ports = field(default_factory=Ports)
    # Organisations with a database server of their own in this region: organisation id → its port.
    dedicated_databases: dict[str, int] = field(default_factory=dict)
    DEDICATED_FIRST_PORT = 8760

    def add_dedicated_database(self, organisation: str) -> int:
        if organisation not in self.dedicated_databases:
            self.dedicated_databases[organisation] = max(self.dedicated_databases.values(),
                                                         default=self.DEDICATED_FIRST_PORT - 1) + 1
        return self.dedicated_databases[organisation]

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
        return cls(**data)


def default_state_dir(start: Path | None = None) -> Path:
    """REGIO_STATE_DIR, else ``.regio`` in the checkout that holds ``start``."""
    if os.environ.get("REGIO_STATE_DIR"):
        return Path(os.environ["REGIO_STATE_DIR"]).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "regio").is_file() and (d / "libs" / "common").is_dir():
            return d / ".regio"
    return here / ".regio"
