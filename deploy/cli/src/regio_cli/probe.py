"""`python -m regio_cli.probe NAME`: exit 0 when the region's server or service NAME answers.

The health check of each container of docker-compose.yml. It runs every few seconds in a
dozen containers, so it imports the standard library and the layout alone: the `regio`
command imports the services' settings, Docker's and NATS's clients, and would cost a
core between them."""
import sys
import urllib.request

from regio_common.layout import SERVICES, Layout, default_state_dir
from regio_common.processes import port_open
from regio_common.servers import PostgresCluster, seaweedfs_ready

RUNNER_AGENT = "runner-agent-"


def ready(name: str, layout: Layout) -> bool | None:
    """Whether NAME answers; None when the region has no such component."""
    ports = layout.ports
    if name in SERVICES or name.startswith(RUNNER_AGENT):
        if name in SERVICES:
            port = getattr(ports, name)
        else:
            port = ports.runner_agent_first + int(name.removeprefix(RUNNER_AGENT)) - 1
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
    clusters = {"postgres": ports.postgres, "apps-postgres": ports.apps_postgres}
    if name in clusters:
        return PostgresCluster(name, layout.state_dir, clusters[name]).ready()
    if name == "seaweedfs":
        return seaweedfs_ready(ports.storage_s3, ports.storage_master)
    port = {"nats": ports.nats, "caddy": ports.caddy_admin}.get(name)
    return None if port is None else port_open(port)


def main() -> int:
    name = sys.argv[1]
    state = default_state_dir()
    layout = Layout.load(state) or Layout(state_dir=state)
    answer = ready(name, layout)
    if answer is None:
        print(f"regio probe: no component {name!r}", file=sys.stderr)
        return 2
    return 0 if answer else 1


if __name__ == "__main__":
    sys.exit(main())
