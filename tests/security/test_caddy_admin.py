"""Caddy's admin API loads any config it is sent: whoever reaches it controls every route
of the region. Only Caddy's own account may reach it, on a Unix socket; no TCP port serves it.

Caddy here is the test's own, prepared and started by the code `regio up` runs
(``prepare_caddy``, ``caddy_process``), in a directory every account can enter, so only the
admin socket's own privacy stops another account."""
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from regio_common import servers
from regio_common.processes import ManagedProcess, free_port, port_open, wait_for_port, wait_for_socket
from regio_common.servers import caddy_child_pidfile

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tries the admin API as the nobody account")

@dataclass
class RunningCaddy:
    state_dir: Path
    process: ManagedProcess
    http_port: int
    https_port: int

    @property
    def admin_socket(self) -> Path:
        return servers.caddy_admin_socket(self.state_dir)

    def pid(self) -> int:
        return int(caddy_child_pidfile(self.state_dir).read_text())


def start_caddy(state_dir: Path, http_port: int, https_port: int) -> ManagedProcess:
    """As `regio up` does."""
    servers.prepare_caddy(state_dir, http_port, https_port)
    process = servers.caddy_process(state_dir, http_port, https_port)
    process.start()
    wait_for_port(http_port, 15, process=process)
    return process


@pytest.fixture(scope="module")
def caddy() -> Iterator[RunningCaddy]:
    state = Path(tempfile.mkdtemp(prefix="regio-caddy-"))
    state.chmod(0o755)
    http_port, https_port = free_port(), free_port()
    previous = os.umask(0o022)
    try:
        process = start_caddy(state, http_port, https_port)
    finally:
        os.umask(previous)
    running = RunningCaddy(state, process, http_port, https_port)
    try:
        wait_for_socket(running.admin_socket, 15, process=process)
        yield running
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` has listening sockets on (what ``ss -ltnp`` shows for it)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def admin_config_over_tcp(port: int, as_user: str | None = None) -> str | None:
    """What GET /config/ on a loopback port answers, tried as ``as_user``; None when nothing does."""
    argv = ["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/config/"]
    result = subprocess.run(["runuser", "-u", as_user, "--", *argv] if as_user else argv,
                            capture_output=True, text=True, timeout=30)
    return result.stdout if result.returncode == 0 else None


def test_no_tcp_port_of_caddy_serves_its_admin_api(caddy):
    ports = listening_tcp_ports(caddy.pid())
    assert {caddy.http_port, caddy.https_port} <= ports  # the scan sees Caddy's sockets
    assert ports - {caddy.http_port, caddy.https_port} == set()
    for port in ports:
        answer = admin_config_over_tcp(port) or ""
        assert '"admin"' not in answer and '"apps"' not in answer


def test_another_account_cannot_reach_the_admin_api(caddy):
    for port in listening_tcp_ports(caddy.pid()) - {caddy.http_port, caddy.https_port}:
        assert admin_config_over_tcp(port, as_user="nobody") is None, f"the admin API answers nobody on {port}"
    on_socket = subprocess.run(["runuser", "-u", "nobody", "--", "curl", "-sS", "--max-time", "5", "--unix-socket",
                                str(caddy.admin_socket), "http://caddy/config/"],
                               capture_output=True, text=True, timeout=30)
    assert on_socket.returncode != 0 and '"admin"' not in on_socket.stdout
    directory = caddy.admin_socket.parent.stat()
    assert directory.st_mode & 0o777 == 0o700 and directory.st_uid == os.geteuid()
    assert caddy.admin_socket.stat().st_mode & 0o777 == 0o600


def test_caddys_own_account_loads_configs_on_the_socket(caddy):
    """The region's ingress (the same account) still reaches it: the socket is the way in."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(caddy.admin_socket)), base_url="http://caddy",
                      timeout=10) as admin:
        config = admin.get("/config/").json()
        assert config["admin"]["listen"] == f"unix/{caddy.admin_socket}|0600"
        assert admin.post("/load", json=config).status_code == 200


def test_a_config_saved_with_the_admin_api_on_a_port_resumes_on_the_socket():
    """A region started by earlier code: Caddy autosaved its config with the admin API on a
    loopback port, and `--resume` would open it there again at the next start."""
    state = Path(tempfile.mkdtemp(prefix="regio-caddy-old-"))
    old_admin, http_port, https_port = free_port(), free_port(), free_port()
    autosave = state / "caddy" / "config" / "caddy" / "autosave.json"
    autosave.parent.mkdir(parents=True)
    autosave.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{old_admin}"}, "apps": {"http": {"servers": {
        "ingress": {"listen": ["fd/3"], "automatic_https": {"disable": True},
                    "routes": [{"handle": [{"handler": "static_response", "body": "saved table"}]}]}}}}}))
    process = start_caddy(state, http_port, https_port)
    try:
        assert httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10).text == "saved table"  # resumed
        assert not port_open(old_admin)
        assert listening_tcp_ports(int(caddy_child_pidfile(state).read_text())) == {http_port, https_port}
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)
