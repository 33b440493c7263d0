"""Machines and addresses around the host, for tests of what a container may reach."""
import secrets
import socket
import subprocess
import sys
from contextlib import contextmanager

NEIGHBOUR_PORT = 80
# Run in a container (python3 -c PROBE '[[host, port], …]'): which of the targets accept a connection.
PROBE = """
import json, socket, sys
reached = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        reached[f"{host}:{port}"] = True
    except OSError:
        reached[f"{host}:{port}"] = False
print(json.dumps(reached))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def neighbourhood(addresses: list[str]):
    """Another machine on the host's networks, answering on NEIGHBOUR_PORT at each of ``addresses``:
    a network namespace behind a veth pair, routed to as the cloud's metadata service or a
    private network's neighbour would be (forwarded by the host, not delivered to it)."""
    tag = secrets.token_hex(3)
    namespace, outside, inside = f"regio-t-{tag}", f"rgt{tag}h", f"rgt{tag}n"
    # The link between them: a /30 of the benchmarking range, which no rule concerns.
    third, fourth = int(tag[:2], 16), int(tag[2:4], 16) & 0xfc
    host_side, far_side = f"198.18.{third}.{fourth + 1}", f"198.18.{third}.{fourth + 2}"
    metric = str(1000 + int(tag[4:], 16))  # another run's route to the same address may exist
    ip("netns", "add", namespace)
    listener = None
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
        ip("addr", "add", f"{host_side}/30", "dev", outside)
        ip("link", "set", outside, "up")
        inner = ["ip", "netns", "exec", namespace]
        for command in (["ip", "addr", "add", f"{far_side}/30", "dev", inside],
                        *(["ip", "addr", "add", f"{address}/32", "dev", inside] for address in addresses),
                        ["ip", "link", "set", inside, "up"], ["ip", "link", "set", "lo", "up"],
                        ["ip", "route", "add", "default", "via", host_side]):
            subprocess.run([*inner, *command], check=True, capture_output=True)
        for address in addresses:
            ip("route", "add", f"{address}/32", "via", far_side, "metric", metric)
        listener = subprocess.Popen(
            [*inner, sys.executable, "-c", f"import socket\ns = socket.create_server(('0.0.0.0', {NEIGHBOUR_PORT}))\nprint('ready', "
             "flush=True)\nwhile True: s.accept()[0].close()"], stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        yield
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for address in addresses:
            subprocess.run(["ip", "route", "del", f"{address}/32", "via", far_side, "metric", metric],
                           capture_output=True)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@contextmanager
def host_private_address(address: str):
    """An address of the host's own on a private network (on its loopback interface: the
    kernel may have no dummy interfaces), listening."""
    ip("addr", "add", f"{address}/32", "dev", "lo")
    try:
        with listening(address) as port:
            yield port
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], capture_output=True)


@contextmanager
def listening(address: str, port: int = 0):
    with socket.create_server((address, port)) as listener:
        yield listener.getsockname()[1]
