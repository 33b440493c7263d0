"""What an instance reaches beyond its own container, with the host's firewall for the apps
network in force: the internet and the region's services for applications, and nothing of the
host's networks (a cloud's instance metadata, private ranges, the host's own addresses,
other Docker networks) but the ranges the region's settings allow."""
import json
import secrets
import subprocess
from contextlib import contextmanager

import pytest

from regio_common import egress
from regio_common.testing.networks import NEIGHBOUR_PORT, host_private_address, listening, neighbourhood

from .test_agent import _running
from .test_confinement import PROBE

PORT = NEIGHBOUR_PORT


@contextmanager
def other_network_container(docker_client, app_image):
    """An application of another Docker network than the apps', listening on its port 8000."""
    network = docker_client.networks.create(f"regio-test-other-{secrets.token_hex(4)}", driver="bridge")
    try:
        container = docker_client.containers.run(app_image, detach=True, network=network.name,
                                                 environment={"PORT": "8000"}, labels={"regio.test": "egress"})
        try:
            container.reload()
            yield container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        finally:
            container.remove(force=True)
    finally:
        network.remove()


def test_the_allowed_ranges_setting_is_read_and_a_bad_range_named():
    assert egress.parse_allowed(" 10.1.2.0/24, fd00:1::/64,,") == (
        egress.ipaddress.ip_network("10.1.2.0/24"), egress.ipaddress.ip_network("fd00:1::/64"))
    with pytest.raises(egress.InvalidEgressSetting, match=r"REGIO_RUNNER_EGRESS_ALLOW: '10.1.2.300/24' is not"):
        egress.parse_allowed("10.1.2.0/24,10.1.2.300/24")


def test_the_hosts_resolvers_are_read_but_its_loopback_ones(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n")
    assert egress.host_resolvers([conf, tmp_path / "missing"]) == ("10.0.0.2", "fe80::1")


def chain_and_jumps(policy: egress.EgressPolicy) -> list[str]:
    listed = subprocess.run(["iptables", "-S"], check=True, capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if policy.chain in line]


def test_applying_again_replaces_the_rules_rather_than_adding_to_them():
    policy = egress.EgressPolicy(bridge=f"rgt{secrets.token_hex(3)}", gateway="172.31.255.1", service_ports=(5432,),
                                 allowed=egress.parse_allowed("10.1.2.0/24"))
    try:
        egress.apply(policy)
        once = chain_and_jumps(policy)
        egress.apply(policy)
        assert chain_and_jumps(policy) == once
        assert sum(f"-i {policy.bridge} -j {policy.chain}" in line for line in once) == 2  # INPUT, DOCKER-USER
        narrower = egress.EgressPolicy(policy.bridge, policy.gateway, (5432,), allowed=())
        egress.apply(narrower)
        assert [line for line in chain_and_jumps(policy) if "10.1.2.0/24" in line] == []
    finally:
        egress.remove(policy)
    assert chain_and_jumps(policy) == []


async def test_an_instance_reaches_the_internet_and_its_services_but_nothing_else_of_the_hosts_networks(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    # Random private addresses: another run of this test may be on the same host.
    a, b = secrets.randbelow(250) + 2, secrets.randbelow(250) + 2
    metadata, private_neighbour, allowed_neighbour = "169.254.169.254", f"10.{a}.{b}.7", f"10.{a}.{(b + 1) % 256}.7"
    wireserver = "168.63.129.16"  # Azure's, public but of the host's surroundings
    internet = f"198.51.100.{a}"  # a documentation range, standing for any public address
    host_private = f"192.168.{a}.{b}"
    # The host on an address no range rule refuses: only the rule for the host's own addresses does.
    host_public = f"203.0.113.{a}"
    instance = region.instance(app_image)
    with (neighbourhood([internet, metadata, wireserver, private_neighbour, allowed_neighbour]),
          host_private_address(host_private) as host_private_port,
          host_private_address(host_public) as host_public_port,
          other_network_container(docker_client, app_image) as other_network_app):
        async with start_agent(runner_name) as agent:
            network = await eventually(lambda: next(iter(docker_client.networks.list(names=[agent.settings.network])),
                                                    None))  # the agent makes it as it starts
            gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
            with listening(gateway) as service_port, listening(gateway) as platform_port:
                policy = egress.EgressPolicy(bridge=egress.bridge_of(network.attrs), gateway=gateway,
                                             service_ports=(service_port,),
                                             allowed=egress.parse_allowed(f"10.{a}.{(b + 1) % 256}.0/24"))
                egress.apply(policy)
                try:
                    await region.put_desired(runner_name, 1, [instance])
                    seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
                    container = docker_client.containers.get(seen.container_id)
                    targets = [("127.0.0.1", 8000), (internet, PORT), (metadata, PORT), (wireserver, PORT),
                               (private_neighbour, PORT), (host_private, host_private_port),
                               (host_public, host_public_port), (other_network_app, 8000),
                               (gateway, platform_port), (gateway, service_port), (allowed_neighbour, PORT)]
                    code, output = container.exec_run(["python3", "-c", PROBE, json.dumps(targets)])
                    assert code == 0, output
                finally:
                    egress.remove(policy)

    assert json.loads(output) == {
        "127.0.0.1:8000": True,  # its own application
        f"{internet}:{PORT}": True,  # the internet
        f"{metadata}:{PORT}": False,  # the cloud's instance metadata
        f"{wireserver}:{PORT}": False,  # Azure's WireServer
        f"{private_neighbour}:{PORT}": False,  # a machine on the host's private network
        f"{host_private}:{host_private_port}": False,  # the host itself, on its private address
        f"{host_public}:{host_public_port}": False,  # the host itself, on an address of its own
        f"{other_network_app}:8000": False,  # a container of another Docker network
        f"{gateway}:{platform_port}": False,  # the host on the gateway, but a port not of the apps' services
        f"{gateway}:{service_port}": True,  # the region's service for applications
        f"{allowed_neighbour}:{PORT}": True,  # a range the region's settings allow
    }
