"""The socket holder keeps a server's port accepting across the server's restarts: a
connection made while the server is down waits and is answered by the next one. Caddy runs
under it (regio_common.servers.caddy_process)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from regio_common.processes import port_open, wait_for_socket
from regio_common.servers import CADDY_HTTP_SOCKET, caddy_admin_socket, caddy_process, prepare_caddy
from regio_common.testing.plugin import free_port

# A server of the holder's kind: serves the socket it inherits as fd 3, answering each
# connection with its own pid. It starts slowly, as a real server loads its config.
SERVER = """
import os, socket, time
time.sleep(0.5)
listener = socket.socket(fileno=3)
while True:
    connection, _ = listener.accept()
    connection.sendall(str(os.getpid()).encode())
    connection.close()
"""


def wait_for(check, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def alive(pid: int) -> bool:
    """Running: a zombie (ended, not yet reaped by whoever inherited it) is not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture
def holder(tmp_path):
    port = free_port()
    child_pidfile = tmp_path / "server.pid"
    process = subprocess.Popen([sys.executable, "-m", "regio_common.socket_holder", "--child-pidfile",
                                str(child_pidfile), f"127.0.0.1:{port}", "--", sys.executable, "-c", SERVER])
    yield port, child_pidfile, process
    if process.poll() is None:
        process.kill()
        process.wait()


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        return connection.recv(100).decode()


def server_pid(child_pidfile: Path) -> int | None:
    try:
        return int(child_pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_a_connection_made_while_the_server_restarts_waits_for_the_next_one(holder):
    port, child_pidfile, _ = holder
    first = wait_for(lambda: server_pid(child_pidfile), "the server's pid")
    assert ask(port) == str(first)

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first) or None, "the server gone")
    # The next server takes half a second to accept: this connection is made meanwhile.
    answer = ask(port)

    second = server_pid(child_pidfile)
    assert second != first and answer == str(second)


def test_stopping_the_holder_stops_its_server_and_closes_the_port(holder):
    port, child_pidfile, process = holder
    server = wait_for(lambda: server_pid(child_pidfile), "the server's pid")
    ask(port)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    wait_for(lambda: not alive(server), "the server stopped with its holder")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_holder_killed_outright_takes_its_server_with_it(holder):
    _, child_pidfile, process = holder
    server = wait_for(lambda: server_pid(child_pidfile), "the server's pid")
    process.kill()
    process.wait()
    wait_for(lambda: not alive(server), "the orphaned server ended")


def test_a_caddy_config_saved_before_its_sockets_were_held_resumes_on_them(tmp_path):
    """After an upgrade, Caddy resumes a config that binds the ports the holder now has: it is
    moved onto the held sockets, so the upgraded Caddy starts and serves what it served."""
    admin_port, http_port, https_port = free_port(), free_port(), free_port()
    autosave = tmp_path / "caddy" / "config" / "caddy" / "autosave.json"
    autosave.parent.mkdir(parents=True)
    autosave.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{admin_port}"}, "apps": {"http": {"servers": {
        "ingress": {"listen": [f"127.0.0.1:{http_port}"], "automatic_https": {"disable": True},
                    "routes": [{"handle": [{"handler": "static_response", "body": "saved table"}]}]}}}}}))
    prepare_caddy(tmp_path, http_port, https_port)
    caddy = caddy_process(tmp_path, http_port, https_port)
    assert json.loads(autosave.read_text())["apps"]["http"]["servers"]["ingress"]["listen"] == [CADDY_HTTP_SOCKET]
    caddy.start()
    try:
        wait_for_socket(caddy_admin_socket(tmp_path), 15, process=caddy)
        assert httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10).text == "saved table"
        assert not port_open(admin_port)  # its admin API moved to the private socket too
    finally:
        caddy.stop()
