"""The host's loopback, where the region's own services listen, is out of the apps' reach.

The engine publishes instances' ports on 127.0.0.1 by NAT (no userland proxy), for which it
lets its bridges route 127.0.0.0/8. `regio up` adds the rule that drops what arrives there
from another interface but replies and NAT. An app container cannot forge such a packet (it
has no NET_ADMIN or NET_RAW); this test plays one that could: from the host, it re-routes a
container's 127.0.0.0/8 to the apps network's gateway and sends a datagram to a listener on
the host's 127.0.0.1, as the ingress's access-log port is."""
import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest

from regio_cli import apps_network, prerequisites
from regio_common import egress


@pytest.fixture
def rerouted_container():
    """A container on the apps network whose 127.0.0.0/8 leaves by its gateway; yields a
    function that runs Python (the host's) in its network namespace."""
    engine = docker.from_env()
    container = engine.containers.run("regio/python:3.11", entrypoint=["sleep", "120"], detach=True,
                                      network=apps_network.NAME, labels={"regio.test": "host-loopback"})
    try:
        container.reload()
        pid = container.attrs["State"]["Pid"]
        gateway = apps_network.ensure_gateway()
        netns = ["nsenter", "-t", str(pid), "-n"]
        for command in (["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.eth0.route_localnet=1"],
                        ["ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"],
                        ["ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local"],
                        ["ip", "route", "add", "127.0.0.0/8", "via", gateway, "dev", "eth0"]):
            subprocess.run([*netns, *command], check=True, capture_output=True)

        def python(code: str) -> None:
            subprocess.run([*netns, "python3", "-c", code], check=True, capture_output=True, timeout=30)

        yield python
    finally:
        container.remove(force=True)
        engine.close()


def delivered(python, message: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            python(f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto({message!r}, "
                   f"('127.0.0.1', {port}))")
            try:
                return listener.recv(100) == message
            except TimeoutError:
                pass
        return False


def test_a_container_cannot_reach_the_hosts_loopback_even_by_forged_routes(region, rerouted_container):
    assert not delivered(rerouted_container, b"to the host's loopback")


def loopback_routed_on_apps_bridge() -> bool:
    engine = docker.from_env()
    try:
        bridge = f"br-{engine.networks.get(apps_network.NAME).id[:12]}"
    finally:
        engine.close()
    return Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "1"


def test_without_the_guard_it_could(region, rerouted_container):
    """What the guard is for: the same datagram arrives once the rule is gone (and it is put back).
    The apps network's own firewall (regio_common.egress), which refuses the host's addresses
    too, is lifted for the time as well."""
    if not loopback_routed_on_apps_bridge():
        pytest.skip("this engine publishes ports with its userland proxy: its bridges route no loopback at all")
    engine = docker.from_env()
    try:
        bridge = egress.bridge_of(engine.networks.get(apps_network.NAME).attrs)
    finally:
        engine.close()
    to_apps_firewall = ["INPUT", "-i", bridge, "-j", egress.EgressPolicy(bridge, "", ()).chain]
    firewalled = subprocess.run(["iptables", "-D", *to_apps_firewall], capture_output=True).returncode == 0
    subprocess.run(["iptables", "-D", *prerequisites.LOOPBACK_GUARD], check=True)
    try:
        assert delivered(rerouted_container, b"to the host's loopback")
    finally:
        prerequisites.guard_loopback()
        if firewalled:
            subprocess.run(["iptables", "-I", "INPUT", "1", *to_apps_firewall[1:]], check=True)
